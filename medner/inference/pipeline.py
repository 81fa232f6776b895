"""The whole path: notes -> windows -> encoder -> entities (:func:`extract`, :class:`NerPipeline`), and
the same path for pre-split sentences (:func:`predict_sentences`, :func:`sentence_log_probs`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medner.decoding import SpanEdges, decode
from medner.inference.encoders import DEFAULT_MICRO_BATCH, Encoder, SoloCores, encode_sorted, ort_encoder
from medner.inference.entities import DecodedNote, Entity, decode_notes, note_word_log_probs
from medner.inference.notes import DEFAULT_MAX_NOTE_CHARS
from medner.inference.windows import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_STRIDE,
    TokenizedBatch,
    WordPieceTokenizer,
    note_rows,
    tokenize_notes,
    tokenize_words,
)
from medner.spans import join_tokens


def extract(
    notes: Sequence[str],
    tokenizer: Any,
    encoder: Encoder,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_MICRO_BATCH,
    decoder: str = "viterbi",
    edges: SpanEdges | None = None,
) -> list[list[Entity]]:
    """Entities for each note: tokenize, encode in length-sorted micro-batches, decode (with ``edges``)."""
    _, decoded = extract_decoded(notes, tokenizer, encoder, max_length, stride, batch_size, decoder, edges)
    return [d.entities for d in decoded]


def extract_decoded(
    notes: Sequence[str],
    tokenizer: Any,
    encoder: Encoder,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_MICRO_BATCH,
    decoder: str = "viterbi",
    edges: SpanEdges | None = None,
) -> tuple[TokenizedBatch, list[DecodedNote]]:
    """:func:`extract` that also returns the tokenized batch and each note's word labels and confidences."""
    batch = tokenize_notes(tokenizer, notes, max_length, stride)
    logits = encode_sorted(batch.input_ids, batch.attention_mask, encoder, batch_size)
    return batch, decode_notes(notes, batch.notes, [note_rows(logits, layout) for layout in batch.notes], decoder,
                               edges)


def encode_sentences(
    sentences: Sequence[Sequence[str]], tokenizer: Any, encoder: Encoder, batch_size: int = DEFAULT_MICRO_BATCH,
    max_length: int = DEFAULT_MAX_LENGTH, stride: int = DEFAULT_STRIDE,
) -> tuple[TokenizedBatch, np.ndarray]:
    """Pre-split sentences through the serving path's tokenize and encode steps (each sentence is one
    note of one sentence): the windows and their logits, which evaluation and export gates score."""
    offsets = [join_tokens(tokens)[1] for tokens in sentences]
    batch = tokenize_words(tokenizer, sentences, offsets, max_length, stride)
    return batch, encode_sorted(batch.input_ids, batch.attention_mask, encoder, batch_size)


def sentence_log_probs(
    sentences: Sequence[Sequence[str]], tokenizer: Any, encoder: Encoder, **options: Any
) -> list[np.ndarray]:
    """Per-word tag log-probabilities of pre-split sentences through the serving path."""
    batch, logits = encode_sentences(sentences, tokenizer, encoder, **options)
    return [note_word_log_probs(layout, note_rows(logits, layout)) for layout in batch.notes]


def decode_sentences(
    batch: TokenizedBatch, logits: np.ndarray, decoder: str = "viterbi",
    sentences: Sequence[Sequence[str]] | None = None, edges: SpanEdges | None = None,
) -> list[list[str]]:
    """O/D/T labels of each sentence of :func:`encode_sentences`' output (``edges`` apply given the ``sentences``)."""
    words = sentences if edges and sentences is not None else [None] * len(batch.notes)
    return [decode(note_word_log_probs(layout, note_rows(logits, layout)), decoder, w, edges, layout.sentences)
            for layout, w in zip(batch.notes, words)]


def predict_sentences(
    sentences: Sequence[Sequence[str]], tokenizer: Any, encoder: Encoder, decoder: str = "viterbi",
    edges: SpanEdges | None = None, **options: Any
) -> list[list[str]]:
    """O/D/T labels of pre-split sentences through the serving path."""
    return decode_sentences(*encode_sentences(sentences, tokenizer, encoder, **options), decoder, sentences, edges)


class NerPipeline:
    """One exported model version run in this process: the tokenizer and ``model.onnx`` of
    ``version_dir`` with its Triton config ``parameters`` (max_length, stride, max_note_chars,
    micro_batch, decode, model_file, threads, spinning, solo_threads, solo_max_chars), decoding with the span
    edges saved beside the tokenizer (none for versions exported before them). The CPU ``ner`` Triton model
    runs exactly this; ``threads`` overrides the config's.

    ``solo_threads`` above ``threads`` (``0``: every core) adds :class:`SoloCores`: a call of at most
    ``solo_max_chars`` characters runs on ``solo_threads`` threads while no other instance runs."""

    def __init__(self, version_dir: Path | str, parameters: dict[str, str], threads: int | None = None):
        version_dir = Path(version_dir)
        self.max_length = int(parameters.get("max_length", DEFAULT_MAX_LENGTH))
        self.stride = int(parameters.get("stride", DEFAULT_STRIDE))
        self.max_note_chars = int(parameters.get("max_note_chars", DEFAULT_MAX_NOTE_CHARS))
        self.micro_batch = int(parameters.get("micro_batch", DEFAULT_MICRO_BATCH))
        self.decoder = parameters.get("decode", "viterbi")
        self.tokenizer = WordPieceTokenizer.from_dir(version_dir)
        self.edges = SpanEdges.load(version_dir)
        model_file = version_dir / parameters.get("model_file", "model.onnx")
        threads = threads or int(parameters.get("threads", 1))
        spinning = parameters.get("spinning", "true") == "true"
        self.encode = ort_encoder(model_file, threads, spinning)
        solo_threads = int(parameters.get("solo_threads", 1)) or len(os.sched_getaffinity(0))
        self.solo = None if solo_threads <= threads else SoloCores(
            version_dir.parent.parent, self.encode, ort_encoder(model_file, solo_threads, spinning),
            int(parameters.get("solo_max_chars", 0)))
        self.version_dir = version_dir

    @contextmanager
    def _encoder(self, notes: Sequence[str]) -> Iterator[Encoder]:
        if self.solo is None:
            yield self.encode
        else:
            with self.solo.encoder(notes) as encoder:
                yield encoder

    def __call__(self, notes: Sequence[str]) -> list[list[Entity]]:
        """Entities of each (validated) note."""
        with self._encoder(notes) as encoder:
            return extract(notes, self.tokenizer, encoder, self.max_length, self.stride, self.micro_batch,
                           self.decoder, self.edges)

    def decoded(self, notes: Sequence[str]) -> tuple[TokenizedBatch, list[DecodedNote]]:
        """The tokenized batch and each note's decoding (word labels, confidences, entities): what
        ``monitoring.features.FeatureTagger`` computes a served model's profile rows from, in the same pass."""
        with self._encoder(notes) as encoder:
            return extract_decoded(notes, self.tokenizer, encoder, self.max_length, self.stride, self.micro_batch,
                                   self.decoder, self.edges)
