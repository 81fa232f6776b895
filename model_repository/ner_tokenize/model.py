"""Triton python model: raw notes -> word-piece windows (medner.inference.tokenize_notes)."""

import os
import sys

# The python backend stub ignores PYTHONPATH: `medner serve` passes the project's site-packages here.
sys.path[:0] = [p for p in os.environ.get("MEDNER_SITE_PACKAGES", "").split(os.pathsep) if p]

import triton_python_backend_utils as pb_utils  # noqa: E402

from medner.inference import (  # noqa: E402
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_NOTE_CHARS,
    DEFAULT_STRIDE,
    TokenizedBatch,
    WordPieceTokenizer,
    gather_notes,
    pack_notes,
    tokenize_notes,
)
from medner.triton import model_parameters  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.max_length = int(params.get("max_length", DEFAULT_MAX_LENGTH))
        self.stride = int(params.get("stride", DEFAULT_STRIDE))
        self.max_note_chars = int(params.get("max_note_chars", DEFAULT_MAX_NOTE_CHARS))
        self.tokenizer = WordPieceTokenizer.from_dir(os.path.join(args["model_repository"], args["model_version"]))

    def execute(self, requests):
        texts = [pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy().reshape(-1) for r in requests]
        batch = gather_notes(texts, self.max_note_chars)
        responses = [None] * len(requests)
        for index, message in batch.errors.items():  # a bad note fails its own request, not the batch
            error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
            responses[index] = pb_utils.InferenceResponse(error=error)
        if batch.notes:
            # one batched tokenizer call for every note of every request in this batch
            tokenized = tokenize_notes(self.tokenizer, batch.notes, self.max_length, self.stride)
            for index, first, count in batch.slices:
                part = TokenizedBatch(tokenized.input_ids, tokenized.attention_mask,
                                      tokenized.notes[first: first + count])
                input_ids, attention_mask, word_index = pack_notes(part)
                responses[index] = pb_utils.InferenceResponse([
                    pb_utils.Tensor("input_ids", input_ids),
                    pb_utils.Tensor("attention_mask", attention_mask),
                    pb_utils.Tensor("word_index", word_index),
                ])
        return responses
