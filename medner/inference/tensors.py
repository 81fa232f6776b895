"""Tensors between Triton models (the GPU ensemble: ``ner_tokenize`` -> ``ner_encoder`` -> ``ner_decode``):
a note's word layout packed into one int64 array and back."""

from __future__ import annotations

import numpy as np

from medner.inference.windows import NoteWindows, TokenizedBatch, note_rows

WORD_INDEX_COLUMNS = 4  # start char, end char, window, position (-1 pads)


def pack_notes(batch: TokenizedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-note tensors of ``batch.notes`` (any subset of the tokenized notes): ids and mask
    ``(notes, windows, seq)`` (padded windows are all zero) and the word index ``(notes, words, 4)``,
    so each note travels as one row of a batch."""
    n_notes = len(batch.notes)
    max_windows = max((n.n_windows for n in batch.notes), default=1)
    max_words = max((len(n.words) for n in batch.notes), default=0)
    seq = max((int(note_rows(batch.attention_mask, n).sum(axis=1).max()) for n in batch.notes), default=2)
    input_ids = np.zeros((n_notes, max_windows, seq), dtype=np.int64)
    attention_mask = np.zeros((n_notes, max_windows, seq), dtype=np.int64)
    word_index = np.full((n_notes, max(max_words, 1), WORD_INDEX_COLUMNS), -1, dtype=np.int64)
    for i, note in enumerate(batch.notes):
        input_ids[i, : note.n_windows] = note_rows(batch.input_ids, note)[:, :seq]
        attention_mask[i, : note.n_windows] = note_rows(batch.attention_mask, note)[:, :seq]
        if note.words:
            word_index[i, : len(note.words), :2] = note.words
            word_index[i, : len(note.words), 2] = note.word_window
            word_index[i, : len(note.words), 3] = note.word_position
    return input_ids, attention_mask, word_index


def unpack_note(word_index: np.ndarray) -> NoteWindows:
    """The layout of one note from its row of :func:`pack_notes`' word index."""
    real = word_index[word_index[:, 0] >= 0]
    n_windows = max(int(real[:, 2].max()) + 1, 1) if len(real) else 1
    words = [(int(s), int(e)) for s, e in real[:, :2]]
    return NoteWindows(words, 0, n_windows, real[:, 2].copy(), real[:, 3].copy())


def unpack_notes(input_ids: np.ndarray, attention_mask: np.ndarray, word_index: np.ndarray) -> TokenizedBatch:
    """The batch :func:`pack_notes` packed (one request's three tensors): each note's windows as rows, note after
    note, and its layout (:func:`unpack_note`) counting the windows the mask holds (padded windows are all zero)."""
    notes, rows = [], 0
    for note_index, note_mask in zip(word_index, attention_mask):
        layout = unpack_note(note_index)
        layout.first_row, layout.n_windows = rows, max(int(note_mask.any(axis=1).sum()), 1)
        rows += layout.n_windows
        notes.append(layout)
    take = [(note, layout.n_windows) for note, layout in enumerate(notes)]
    return TokenizedBatch(np.concatenate([input_ids[note, :count] for note, count in take]),
                          np.concatenate([attention_mask[note, :count] for note, count in take]), notes)
