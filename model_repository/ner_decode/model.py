"""Triton python model: tag logits -> entities with character offsets, one JSON list per note, and each note's
uncertainty
(medner.inference.decode_notes: the BIO-constrained Viterbi decoder training is evaluated with, keeping to the
span edges exported beside this file). The last step of the GPU ensemble, so it profiles the notes as the CPU
model does (monitoring.features.VersionFeatures, from the windows the tokenizer sent the encoder) and reports the
version served, under the ensemble's name (the "ensemble" parameter)."""

import json
import os
import sys

# The python backend stub ignores PYTHONPATH: `medner serve` passes the project's site-packages here.
sys.path[:0] = [p for p in os.environ.get("MEDNER_SITE_PACKAGES", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from medner.config import SERVED_VERSION_METRIC, profile_dir  # noqa: E402
from medner.decoding import SpanEdges  # noqa: E402
from medner.groups import request_groups  # noqa: E402
from medner.inference import WordPieceTokenizer, decode_notes, unpack_note, unpack_notes  # noqa: E402
from medner.triton import model_parameters  # noqa: E402
from monitoring.features import VersionFeatures  # noqa: E402
from monitoring.profiles import profiler_from_env  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.decoder = params.get("decode", "viterbi")
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.edges = SpanEdges.load(version_dir)
        ensemble = params.get("ensemble", args["model_name"])  # the name clients call, as the CPU model's
        # $MEDNER_PROFILE_DIR set: every sentence's features go into rolling whylogs profiles (numbers, no text),
        # from the windows its config routes here (a config older than the profiles here has none)
        windows = "input_ids" in {tensor["name"] for tensor in json.loads(args["model_config"])["input"]}
        self.profiler = profiler_from_env(ensemble) if windows else None
        if not windows and profile_dir():
            pb_utils.Logger.log_warn(f"{args['model_name']}: no profiles: its config gives it no input_ids "
                                     "(install model_repository/ner_decode's config)")
        self.features = (VersionFeatures(version_dir, WordPieceTokenizer.from_dir(version_dir).unk_token_id)
                         if self.profiler is not None else None)
        # the version this replica serves, as the CPU model reports it (deploy/prometheus/medner-rules.yml)
        self.version_family = pb_utils.MetricFamily(name=SERVED_VERSION_METRIC, kind=pb_utils.MetricFamily.GAUGE,
                                                    description="The model version this server serves.")
        self.version_metric = self.version_family.Metric(labels={
            "model": ensemble, "version": args["model_version"], "model_instance": args["model_instance_name"]})
        self.version_metric.set(float(args["model_version"]))

    def execute(self, requests):
        groups, refused = request_groups([r.parameters() for r in requests])
        texts, word_indexes, logits = {}, {}, {}
        for index, request in enumerate(requests):
            if index in refused:
                continue
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            texts[index] = [t.decode("utf-8") for t in text]
            word_indexes[index] = pb_utils.get_input_tensor_by_name(request, "word_index").as_numpy()
            logits[index] = list(pb_utils.get_input_tensor_by_name(request, "logits").as_numpy())
        try:  # one call for every note of every request: a CRF model's confidences are computed over all their
            # sentences at once (medner.inference.decode_notes)
            decoded = iter(self._decode(texts, word_indexes, logits, list(texts)))
            notes_of = {index: [next(decoded) for _ in own] for index, own in texts.items()}
        except Exception:  # a note broke decoding: decode each request alone, so only its own fails (as the CPU model)
            notes_of = None
        responses = []
        for index, request in enumerate(requests):
            if index in refused:  # as the CPU model: a bad group fails its own request
                error = pb_utils.TritonError(refused[index], pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            try:
                notes = notes_of[index] if notes_of is not None else self._decode(texts, word_indexes, logits, [index])
                if self.profiler is not None:
                    batch = unpack_notes(pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy(),
                                         pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy(),
                                         word_indexes[index])
                    self.profiler.log(self.features(texts[index], batch, notes),
                                      [groups[index]] * len(notes) if groups[index] else None)
            except Exception as err:  # the type only: an exception's message may quote the note
                error = pb_utils.TritonError(f"the model failed on this request ({type(err).__name__})")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            documents = [[json.dumps(note.entities, ensure_ascii=False).encode("utf-8")] for note in notes]
            uncertainty = np.array([[note.uncertainty] for note in notes], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("ENTITIES", np.array(documents, dtype=np.object_)),
                 pb_utils.Tensor("UNCERTAINTY", uncertainty)]))
        return responses

    def _decode(self, texts, word_indexes, logits, indexes):
        """The decoded notes (medner.inference.DecodedNote) of the requests at ``indexes``, in order."""
        return decode_notes([t for i in indexes for t in texts[i]],
                            [unpack_note(w) for i in indexes for w in word_indexes[i]],
                            [window for i in indexes for window in logits[i]], self.decoder, self.edges)

    def finalize(self):
        if self.profiler is not None:  # write the open window too: nothing profiled is lost on shutdown
            self.profiler.close()
        del self.version_metric  # before its family (the python backend's rule)
        del self.version_family
