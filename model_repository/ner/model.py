"""Triton python model (CPU): raw notes -> entities, one JSON list per note, and each note's uncertainty
(medner.inference.DecodedNote.uncertainty, what the review queue orders by), in one process.

Tokenize, encode (ONNX Runtime) and decode run here together (medner.inference.NerPipeline, the code
`medner extract --local` runs): each python-model hop of the three-model ensemble costs a stub round trip,
which on 2 cores cost more throughput and latency than it gained (no committed results file compares them).
The notes of every request in a dynamic batch are tagged in one call (length-bucketed micro-batches).
"""

import json
import os
import sys

# The python backend stub ignores PYTHONPATH: `medner serve` passes the project's site-packages here.
sys.path[:0] = [p for p in os.environ.get("MEDNER_SITE_PACKAGES", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from medner.config import SERVED_VERSION_METRIC  # noqa: E402
from medner.groups import request_groups  # noqa: E402
from medner.inference import NerPipeline, gather_notes  # noqa: E402
from medner.triton import model_parameters  # noqa: E402
from monitoring.features import FeatureTagger  # noqa: E402
from monitoring.profiles import profiler_from_env  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.pipeline = NerPipeline(version_dir, model_parameters(args))
        # $MEDNER_PROFILE_DIR set: every sentence's features go into rolling whylogs profiles (numbers, no text)
        self.profiler = profiler_from_env(args["model_name"])
        self.tag_with_features = FeatureTagger(self.pipeline) if self.profiler is not None else None
        # the version this replica serves, on Triton's own metrics endpoint (one series per model instance, gone
        # when the version unloads): deploy/prometheus/medner-rules.yml alerts when replicas disagree
        self.version_family = pb_utils.MetricFamily(name=SERVED_VERSION_METRIC, kind=pb_utils.MetricFamily.GAUGE,
                                                    description="The model version this server serves.")
        self.version_metric = self.version_family.Metric(labels={
            "model": args["model_name"], "version": args["model_version"],
            "model_instance": args["model_instance_name"]})
        self.version_metric.set(float(args["model_version"]))

    def execute(self, requests):
        texts = [pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy().reshape(-1) for r in requests]
        groups, refused = request_groups([r.parameters() for r in requests])  # a bad group fails its own request
        batch = gather_notes(texts, self.pipeline.max_note_chars, refused)
        responses = [None] * len(requests)
        for index, message in batch.errors.items():  # a bad note fails its own request, not the batch
            error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
            responses[index] = pb_utils.InferenceResponse(error=error)
        if batch.notes:
            note_groups = ([groups[index] for index, _, count in batch.slices for _ in range(count)]
                           if self.profiler is not None else None)  # groups only matter to the profiles
            try:
                decoded = self._tag(batch.notes, note_groups)  # one call for every note of every request
            except Exception:  # a note broke the pipeline: tag each request alone, so only its own fails
                decoded = None
            for index, first, count in batch.slices:
                try:
                    own, own_groups = batch.notes[first: first + count], [groups[index]] * count
                    notes = self._tag(own, own_groups) if decoded is None else decoded[first: first + count]
                except Exception as err:  # the type only: an exception's message may quote the note
                    error = pb_utils.TritonError(f"the model failed on this request ({type(err).__name__})")
                    responses[index] = pb_utils.InferenceResponse(error=error)
                    continue
                documents = [[json.dumps(note.entities, ensure_ascii=False).encode("utf-8")] for note in notes]
                uncertainty = np.array([[note.uncertainty] for note in notes], dtype=np.float32)
                responses[index] = pb_utils.InferenceResponse(
                    [pb_utils.Tensor("ENTITIES", np.array(documents, dtype=np.object_)),
                     pb_utils.Tensor("UNCERTAINTY", uncertainty)])
        return responses

    def _tag(self, notes, note_groups):
        """Each note's decoding (medner.inference.DecodedNote: entities, uncertainty); profiled when profiling, by
        group where the requests named one."""
        if self.profiler is None:
            return self.pipeline.decoded(notes)[1]
        decoded, features = self.tag_with_features(notes)
        self.profiler.log(features, note_groups if any(note_groups) else None)
        return decoded

    def finalize(self):
        if self.profiler is not None:  # write the open window too: nothing profiled is lost on shutdown
            self.profiler.close()
        del self.version_metric  # before its family (the python backend's rule)
        del self.version_family
