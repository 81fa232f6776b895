"""The serving hot path, shared by Triton's python models, the in-process client and export checks:

    notes --windows--> word-piece windows --encoders--> logits --entities--> entities with character offsets

Which to call:

* raw notes (any length, any number of sentences): :class:`NerPipeline` (an exported model version, what the
  CPU ``ner`` Triton model runs), or :func:`extract` with a tokenizer and an encoder of your own;
* pre-split sentences (evaluation, export gates): :func:`predict_sentences` for labels,
  :func:`sentence_log_probs` for per-word tag log-probabilities.

The modules, in the order the path runs: :mod:`~medner.inference.notes` (what is a valid note),
:mod:`~medner.inference.windows` (tokenizing and windowing), :mod:`~medner.inference.encoders` (ONNX Runtime
and PyTorch, length-bucketed micro-batches), :mod:`~medner.inference.entities` (decoding to entities),
:mod:`~medner.inference.pipeline` (the whole path) and :mod:`~medner.inference.tensors` (between the GPU
ensemble's Triton models). Everything public is importable from ``medner.inference`` itself.
"""

from medner.inference.encoders import (
    DEFAULT_MICRO_BATCH,
    Encoder,
    SoloCores,
    encode_sorted,
    gpu_providers,
    length_buckets,
    ort_encoder,
    ort_session,
    torch_encoder,
)
from medner.inference.entities import (
    DecodedNote,
    Entity,
    TaggedNote,
    decode_notes,
    log_softmax,
    note_entities,
    note_word_log_probs,
    note_words,
)
from medner.inference.notes import DEFAULT_MAX_NOTE_CHARS, NoteError, RequestNotes, gather_notes, validate_note
from medner.inference.pipeline import (
    NerPipeline,
    decode_sentences,
    encode_sentences,
    extract,
    extract_decoded,
    predict_sentences,
    sentence_log_probs,
)
from medner.inference.tensors import WORD_INDEX_COLUMNS, pack_notes, unpack_note, unpack_notes
from medner.inference.windows import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_STRIDE,
    NoteWindows,
    TokenizedBatch,
    WordPieceTokenizer,
    note_rows,
    tokenize_notes,
    tokenize_words,
)

__all__ = [
    "DEFAULT_MAX_LENGTH", "DEFAULT_MAX_NOTE_CHARS", "DEFAULT_MICRO_BATCH", "DEFAULT_STRIDE", "WORD_INDEX_COLUMNS",
    "DecodedNote", "Encoder", "Entity", "NerPipeline", "NoteError", "NoteWindows", "RequestNotes", "SoloCores",
    "TaggedNote", "TokenizedBatch", "WordPieceTokenizer", "decode_notes", "decode_sentences", "encode_sentences",
    "encode_sorted", "extract", "extract_decoded", "gather_notes", "gpu_providers", "length_buckets", "log_softmax",
    "note_entities", "note_rows", "note_word_log_probs", "note_words", "ort_encoder", "ort_session",
    "pack_notes", "predict_sentences", "sentence_log_probs", "tokenize_notes", "tokenize_words", "torch_encoder",
    "unpack_note", "unpack_notes", "validate_note",
]
