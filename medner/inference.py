"""The serving hot path, shared by Triton's python models, the in-process client and export checks:

    notes --tokenize_notes--> windows of word-pieces --(encoder)--> logits --decode_note--> entities

Notes of any length are split into words (:func:`medner.spans.split_words`), tokenised in one batched
call, and cut into overlapping windows of at most ``max_length`` word-pieces that start and end on word
boundaries, so nothing is truncated. Each word is scored by its first word-piece in the window where it
sits furthest from an edge; the note is then decoded with :func:`medner.decoding.decode`, the decoder
training is evaluated with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from medner.decoding import decode
from medner.labels import BIO_TAGS
from medner.spans import join_tokens, labels_to_spans, split_words

DEFAULT_MAX_LENGTH = 512
DEFAULT_STRIDE = 128  # word-pieces shared by neighbouring windows


class Entity(TypedDict):
    label: str
    start: int
    end: int
    text: str
    score: float


@dataclass
class NoteWindows:
    """One note, tokenised: its words and its windows (rows of the encoder batch)."""

    words: list[tuple[int, int]]  # character offsets of each word in the note
    first_rows: int  # index of this note's first window in the batch
    n_windows: int
    # per word: (window row relative to first_rows, position in that window) of its scoring word-piece
    word_window: np.ndarray
    word_position: np.ndarray


@dataclass
class TokenizedBatch:
    input_ids: np.ndarray  # (windows, seq) int64, padded with the tokenizer's pad id
    attention_mask: np.ndarray  # (windows, seq) int64
    notes: list[NoteWindows]


def _window_bounds(first_piece: np.ndarray, n_pieces: int, body: int, stride: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` over a note's word-pieces, at most ``body`` long, cut at word starts."""
    if n_pieces <= body:
        return [(0, n_pieces)]
    bounds, start = [], 0
    while True:
        end = start + body
        if end >= n_pieces:
            bounds.append((start, n_pieces))
            return bounds
        cut = first_piece[np.searchsorted(first_piece, end, side="right") - 1]
        end = cut if cut > start else end  # a single word longer than a window is cut mid-word
        bounds.append((start, end))
        next_start = first_piece[np.searchsorted(first_piece, end - stride, side="left")]
        start = next_start if start < next_start < end else end


def tokenize_notes(
    tokenizer: Any, notes: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH, stride: int = DEFAULT_STRIDE
) -> TokenizedBatch:
    """Split raw notes into words and word-piece windows, ready for the encoder."""
    words = [split_words(note) for note in notes]
    return tokenize_words(tokenizer, [[n[s:e] for s, e in w] for n, w in zip(notes, words)], words,
                          max_length, stride)


def tokenize_words(
    tokenizer: Any,
    word_texts: Sequence[Sequence[str]],
    word_offsets: Sequence[Sequence[tuple[int, int]]],
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
) -> TokenizedBatch:
    """Word-piece windows for notes already split into words (``word_offsets``: their character offsets)."""
    if not 0 <= stride < max_length - 2:
        raise ValueError(f"stride must be in [0, {max_length - 2}), got {stride}")
    body = max_length - 2  # room for [CLS] ... [SEP]
    encoded = tokenizer([list(w) for w in word_texts], is_split_into_words=True, add_special_tokens=False)
    rows: list[list[int]] = []
    layouts = []
    for index, note_words in enumerate(word_offsets):
        ids = np.asarray(encoded["input_ids"][index], dtype=np.int64)
        word_ids = np.array([-1 if w is None else w for w in encoded.word_ids(index)], dtype=np.int64)
        is_first = np.ones(len(word_ids), dtype=bool)
        is_first[1:] = word_ids[1:] != word_ids[:-1]
        first_piece = np.flatnonzero(is_first)
        bounds = _window_bounds(first_piece, len(ids), body, stride)
        word_window = np.full(len(note_words), -1, dtype=np.int64)
        word_position = np.zeros(len(note_words), dtype=np.int64)
        best_margin = np.full(len(note_words), -1, dtype=np.int64)
        for k, (start, end) in enumerate(bounds):
            rows.append([tokenizer.cls_token_id, *ids[start:end].tolist(), tokenizer.sep_token_id])
            positions = first_piece[(first_piece >= start) & (first_piece < end)]
            owners = word_ids[positions]
            margin = np.minimum(positions - start, end - 1 - positions)
            better = margin > best_margin[owners]
            best_margin[owners[better]] = margin[better]
            word_window[owners[better]] = k
            word_position[owners[better]] = positions[better] - start + 1  # +1 for [CLS]
        layouts.append(NoteWindows(list(note_words), len(rows) - len(bounds), len(bounds), word_window,
                                   word_position))
    width = max((len(r) for r in rows), default=2)
    input_ids = np.full((len(rows), width), tokenizer.pad_token_id or 0, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = row
        attention_mask[r, : len(row)] = 1
    return TokenizedBatch(input_ids, attention_mask, layouts)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def note_word_log_probs(layout: NoteWindows, window_log_probs: np.ndarray) -> np.ndarray:
    """Per-word tag log-probabilities of one note from its windows' ``(windows, seq, tags)`` scores.

    Words without a word-piece (characters the tokenizer drops) get a confident O.
    """
    scores = np.full((len(layout.words), len(BIO_TAGS)), np.log(1e-9))
    scores[:, 0] = 0.0
    has_piece = layout.word_window >= 0
    scores[has_piece] = window_log_probs[layout.word_window[has_piece], layout.word_position[has_piece]]
    return scores


def note_labels(
    layout: NoteWindows, window_logits: np.ndarray, method: str = "viterbi"
) -> tuple[list[str], np.ndarray]:
    """O/D/T label and confidence (probability of the best tag) of each word of one note;
    ``window_logits`` are this note's rows of the encoder output."""
    word_scores = note_word_log_probs(layout, log_softmax(window_logits.astype(np.float32)))
    return decode(word_scores, method), np.exp(word_scores.max(axis=-1))


def decode_note(text: str, layout: NoteWindows, window_logits: np.ndarray, method: str = "viterbi") -> list[Entity]:
    """Entities of one note, with character offsets into ``text``."""
    labels, confidence = note_labels(layout, window_logits, method)
    entities: list[Entity] = []
    for first, end, label in labels_to_spans(labels):
        start_char, end_char = layout.words[first][0], layout.words[end - 1][1]
        entities.append(Entity(label=label, start=start_char, end=end_char, text=text[start_char:end_char],
                               score=round(float(confidence[first:end].mean()), 4)))
    return entities


Encoder = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> logits


def extract(
    notes: Sequence[str],
    tokenizer: Any,
    encoder: Encoder,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = 32,
    method: str = "viterbi",
) -> list[list[Entity]]:
    """Entities for each note: tokenize, encode in length-sorted micro-batches, decode."""
    batch = tokenize_notes(tokenizer, notes, max_length, stride)
    logits = encode_sorted(batch.input_ids, batch.attention_mask, encoder, batch_size)
    return [decode_note(note, layout, _rows(logits, layout), method) for note, layout in zip(notes, batch.notes)]


def predict_sentences(
    sentences: Sequence[Sequence[str]], tokenizer: Any, encoder: Encoder, batch_size: int = 32, method: str = "viterbi",
    max_length: int = DEFAULT_MAX_LENGTH, stride: int = DEFAULT_STRIDE,
) -> list[list[str]]:
    """O/D/T labels of pre-split sentences through the serving path (to score it against gold)."""
    offsets = [join_tokens(tokens)[1] for tokens in sentences]
    batch = tokenize_words(tokenizer, sentences, offsets, max_length, stride)
    logits = encode_sorted(batch.input_ids, batch.attention_mask, encoder, batch_size)
    return [note_labels(layout, _rows(logits, layout), method)[0] for layout in batch.notes]


def _rows(logits: np.ndarray, layout: NoteWindows) -> np.ndarray:
    return logits[layout.first_rows: layout.first_rows + layout.n_windows]


def encode_sorted(input_ids: np.ndarray, attention_mask: np.ndarray, encoder: Encoder, batch_size: int) -> list:
    """Run the encoder over windows in micro-batches of similar length (less padding); returns each
    window's logits trimmed to its length, in the original order."""
    lengths = attention_mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    out: list = [None] * len(order)
    for i in range(0, len(order), batch_size):
        rows = order[i: i + batch_size]
        width = int(lengths[rows].max())
        logits = encoder(input_ids[rows, :width], attention_mask[rows, :width])
        for row, window_logits in zip(rows, logits):
            out[row] = window_logits
    return _stack_ragged(out)


def _stack_ragged(windows: list[np.ndarray]) -> np.ndarray:
    """Stack ``(seq_i, tags)`` arrays into ``(n, max seq, tags)`` (padding is never read)."""
    if not windows:
        return np.zeros((0, 0, len(BIO_TAGS)), dtype=np.float32)
    width = max(w.shape[0] for w in windows)
    stacked = np.zeros((len(windows), width, windows[0].shape[-1]), dtype=np.float32)
    for i, w in enumerate(windows):
        stacked[i, : w.shape[0]] = w
    return stacked
