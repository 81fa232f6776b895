"""Triton python model: tag logits -> entities with character offsets, one JSON list per note, and each note's
uncertainty
(medner.inference.decode_note: the BIO-constrained Viterbi decoder training is evaluated with, keeping to the
span edges exported beside this file)."""

import json
import os
import sys

# The python backend stub ignores PYTHONPATH: `medner serve` passes the project's site-packages here.
sys.path[:0] = [p for p in os.environ.get("MEDNER_SITE_PACKAGES", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from medner.decoding import SpanEdges  # noqa: E402
from medner.inference import decode_note, unpack_note  # noqa: E402
from medner.triton import model_parameters  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.decoder = params.get("decode", "viterbi")
        self.edges = SpanEdges.load(os.path.join(args["model_repository"], args["model_version"]))

    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()
            word_index = pb_utils.get_input_tensor_by_name(request, "word_index").as_numpy()
            notes = [decode_note(text.decode("utf-8"), unpack_note(note_index), note_logits, self.decoder, self.edges)
                     for text, note_logits, note_index in zip(texts, logits, word_index)]
            documents = [[json.dumps(note.entities, ensure_ascii=False).encode("utf-8")] for note in notes]
            uncertainty = np.array([[note.uncertainty] for note in notes], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("ENTITIES", np.array(documents, dtype=np.object_)),
                 pb_utils.Tensor("UNCERTAINTY", uncertainty)]))
        return responses
