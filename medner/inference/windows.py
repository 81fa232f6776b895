"""Notes to encoder windows: words and sentences (:mod:`medner.spans`), word-pieces in one batched
tokenizer call, and windows of at most ``max_length`` pieces, one sentence per window; a longer
sentence is cut into overlapping windows on word boundaries, so nothing is truncated."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medner.spans import split_sentences, split_words

DEFAULT_MAX_LENGTH = 128  # fine-tuning saw single sentences: positions past ~128 are untrained


DEFAULT_STRIDE = 32  # word-pieces shared by neighbouring windows of one long sentence


class WordPieceTokenizer:
    """An exported model's word-piece tokenizer (``tokenizer.json``), read with the ``tokenizers`` library
    alone: importing ``transformers`` costs seconds in every process that serves a model (each Triton model
    instance, each ``medner extract --local``), and the hot path needs only word-piece ids, the word each
    piece belongs to, and four special-token ids (results/tokenizer.md compares the two)."""

    def __init__(self, backend: Any, cls_token_id: int, sep_token_id: int, pad_token_id: int | None,
                 unk_token_id: int | None):
        self.backend = backend  # a tokenizers.Tokenizer
        self.cls_token_id, self.sep_token_id = cls_token_id, sep_token_id
        self.pad_token_id, self.unk_token_id = pad_token_id, unk_token_id

    @classmethod
    def from_dir(cls, folder: Path | str) -> WordPieceTokenizer:
        """The tokenizer ``save_pretrained`` wrote to ``folder``: tokenizer.json, and the special tokens named in
        tokenizer_config.json or special_tokens_map.json."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        special: dict[str, Any] = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).exists():
                special.update(json.loads((folder / name).read_text()))

        def token_id(name: str) -> int | None:
            token = special.get(name)
            return backend.token_to_id(token["content"] if isinstance(token, dict) else token) if token else None

        cls_id, sep_id = token_id("cls_token"), token_id("sep_token")
        if cls_id is None or sep_id is None:
            raise ValueError(f"{folder}: the tokenizer files name no [CLS] or [SEP] token of its vocabulary")
        return cls(backend, cls_id, sep_id, token_id("pad_token"), token_id("unk_token"))

    @classmethod
    def of(cls, tokenizer: Any) -> WordPieceTokenizer:
        """``tokenizer`` itself, or the word-piece model inside a ``transformers`` fast tokenizer (training)."""
        if isinstance(tokenizer, cls):
            return tokenizer
        return cls(tokenizer.backend_tokenizer, tokenizer.cls_token_id, tokenizer.sep_token_id,
                   tokenizer.pad_token_id, tokenizer.unk_token_id)

    def encode_words(self, word_texts: Sequence[Sequence[str]]) -> list[Any]:
        """One ``tokenizers.Encoding`` per note (``.ids``, ``.word_ids``), whole: long notes are windowed later."""
        # a transformers tokenizer leaves its last call's truncation or padding set on the backend
        if self.backend.truncation is not None:
            self.backend.no_truncation()
        if self.backend.padding is not None:
            self.backend.no_padding()
        return self.backend.encode_batch([list(w) for w in word_texts], is_pretokenized=True,
                                         add_special_tokens=False)


@dataclass
class NoteWindows:
    """One note, tokenised: its words and its windows (rows of the encoder batch)."""

    words: list[tuple[int, int]]  # character offsets of each word in the note
    first_row: int  # index of this note's first window in the batch
    n_windows: int
    # per word: (window row relative to first_row, position in that window) of its scoring word-piece
    word_window: np.ndarray
    word_position: np.ndarray
    pieces: int = 0  # word-pieces of the note (windows overlap, so not the sum of their lengths)
    sentences: list[tuple[int, int]] | None = None  # word ranges of its sentences (None: not recorded)


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
        # the first word starting in the last ``stride`` pieces; none when a long last word fills them
        following = np.searchsorted(first_piece, end - stride, side="left")
        next_start = first_piece[following] if following < len(first_piece) else end
        start = next_start if start < next_start < end else end


def tokenize_notes(
    tokenizer: Any, notes: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH, stride: int = DEFAULT_STRIDE
) -> TokenizedBatch:
    """Split raw notes into words and word-piece windows, ready for the encoder."""
    words = [split_words(note) for note in notes]
    return tokenize_words(tokenizer, [[n[s:e] for s, e in w] for n, w in zip(notes, words)], words,
                          max_length, stride, [split_sentences(n, w) for n, w in zip(notes, words)])


def tokenize_words(
    tokenizer: Any,
    word_texts: Sequence[Sequence[str]],
    word_offsets: Sequence[Sequence[tuple[int, int]]],
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    sentences: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> TokenizedBatch:
    """Word-piece windows, by ``tokenizer`` (a :class:`WordPieceTokenizer` or a ``transformers`` fast tokenizer),
    for notes already split into words (``word_offsets``: their character offsets) and, optionally, sentences
    (word ranges; default: the whole note is one sentence)."""
    if not 0 <= stride < max_length - 2:
        raise ValueError(f"stride must be in [0, {max_length - 2}), got {stride}")
    body = max_length - 2  # room for [CLS] ... [SEP]
    tokenizer = WordPieceTokenizer.of(tokenizer)
    encoded = tokenizer.encode_words(word_texts)
    rows: list[list[int]] = []
    layouts = []
    for index, note_words in enumerate(word_offsets):
        ids = np.asarray(encoded[index].ids, dtype=np.int64)
        word_ids = np.array([-1 if w is None else w for w in encoded[index].word_ids], dtype=np.int64)
        is_first = np.ones(len(word_ids), dtype=bool)
        is_first[1:] = word_ids[1:] != word_ids[:-1]
        first_piece = np.flatnonzero(is_first)
        # piece_start[w]: first word-piece of word w (of the next word, for words with no piece)
        piece_start = np.full(len(note_words) + 1, len(ids), dtype=np.int64)
        piece_start[word_ids[first_piece]] = first_piece
        piece_start = np.minimum.accumulate(piece_start[::-1])[::-1]
        bounds = []
        note_sentences = list(sentences[index]) if sentences is not None else [(0, len(note_words))]
        for first_word, end_word in note_sentences:
            start, end = int(piece_start[first_word]), int(piece_start[end_word])
            if end > start:
                inner = first_piece[(first_piece >= start) & (first_piece < end)] - start
                bounds += [(start + a, start + b) for a, b in _window_bounds(inner, end - start, body, stride)]
        bounds = bounds or [(0, 0)]
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
                                   word_position, len(ids), note_sentences))
    width = max((len(r) for r in rows), default=2)
    input_ids = np.full((len(rows), width), tokenizer.pad_token_id or 0, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = row
        attention_mask[r, : len(row)] = 1
    return TokenizedBatch(input_ids, attention_mask, layouts)


def note_rows(array: np.ndarray, layout: NoteWindows) -> np.ndarray:
    """The rows of a batch-level array (ids, mask, logits) that hold one note's windows."""
    return array[layout.first_row: layout.first_row + layout.n_windows]
