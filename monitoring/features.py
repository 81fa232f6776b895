"""Monitoring features: numbers that reveal drift for this task, never the text.

**One row per sentence**, not per note: the same sentences sent as one note or as many give the same rows, so
the reference (export profiles the test sentences) matches live traffic however clients package sentences
into notes. Per-note sizes and rates would not: their distributions move with the number of sentences per
note (sizes add up, rates average out), so ordinary multi-sentence notes would score as drift against a
one-sentence-per-note reference. Sentences are the ones the serving path already encodes one at a time
(:func:`medner.spans.split_sentences` over the note's words), and every number comes from what the hot path
already has (the tokenized batch and the decoded word labels and confidences of
:func:`medner.inference.extract_decoded`): nothing is tokenized or encoded twice.

Columns of :data:`FEATURES` (scored for drift), per sentence:

* ``chars``, ``wordpieces``, ``windows``: size; ``wordpieces`` are the real word-pieces of the sentence's
  encoder windows, and ``windows`` > 1 means a sentence longer than the encoder's window (whose overlapping
  pieces count once per window, as the encoder reads them).
* ``unknown_wordpiece_rate``: share of those word-pieces the tokenizer maps to its unknown token.
* ``oov_word_rate``: share of the words (lower-cased) absent from the training vocabulary
  (``<version_dir>/train_vocabulary.txt``); NaN when the model version has no vocabulary.
* ``disease_per_100_words``, ``treatment_per_100_words``: entities (maximal runs of one label) per 100 words.
* ``confidence_mean``, ``confidence_min``, ``low_confidence_rate``: the decoded tag's probability per word,
  and the share of words below :data:`LOW_CONFIDENCE`.

And :data:`NOTE_SENTENCES` (packaging, not scored): on a note's first sentence the note's sentence count, NaN
on its other sentences, so a profile still counts notes (the column's non-null values) and how long they are.

Rates over zero words are NaN (whylogs counts NaNs apart from the distribution).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from medner.decoding import SpanEdges
from medner.inference import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MICRO_BATCH,
    DEFAULT_STRIDE,
    Encoder,
    Entity,
    NerPipeline,
    TokenizedBatch,
    extract_decoded,
)
from medner.spans import split_sentences

FEATURES: tuple[str, ...] = (
    "chars", "wordpieces", "windows", "unknown_wordpiece_rate", "oov_word_rate", "disease_per_100_words",
    "treatment_per_100_words", "confidence_mean", "confidence_min", "low_confidence_rate",
)
NOTE_SENTENCES = "note_sentences"
PROFILE_COLUMNS: tuple[str, ...] = (*FEATURES, NOTE_SENTENCES)  # the columns of batch_features' rows
LOW_CONFIDENCE = 0.9  # a word whose decoded-tag probability is below this counts as low-confidence
VOCABULARY_FILE = "train_vocabulary.txt"


def read_vocabulary(version_dir: Path | str) -> frozenset[str] | None:
    """The training vocabulary published with a model version, or None when it has none."""
    path = Path(version_dir) / VOCABULARY_FILE
    if not path.exists():
        return None
    return frozenset(line for line in path.read_text(encoding="utf-8").splitlines() if line)


def write_vocabulary(words: Iterable[str], version_dir: Path | str) -> Path:
    """Write the lower-cased, sorted, distinct ``words`` as ``<version_dir>/train_vocabulary.txt``."""
    path = Path(version_dir) / VOCABULARY_FILE
    path.write_text("".join(f"{w}\n" for w in sorted({w.lower() for w in words if w.strip()})), encoding="utf-8")
    return path


def _segment_sums(values: np.ndarray, first: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Sums of ``values[first[i]:end[i]]`` (empty segments give 0), by prefix sums: one pass for the batch."""
    prefix = np.zeros(len(values) + 1, dtype=np.float64)
    np.cumsum(values, out=prefix[1:])
    return prefix[end] - prefix[first]


def batch_features(
    texts: Sequence[str],
    batch: TokenizedBatch,
    labels: Sequence[Sequence[str]],
    confidences: Sequence[np.ndarray],
    unk_id: int | None,
    vocabulary: AbstractSet[str] | None,
) -> np.ndarray:
    """Profile rows ``(sentences, len(PROFILE_COLUMNS))`` (float64) of the notes of ``batch``, note after note
    and sentence after sentence: ``texts`` are the notes the batch was tokenized from, ``labels`` and
    ``confidences`` each note's decoded word labels and confidences. A note without words is one row."""
    if not texts:
        return np.zeros((0, len(PROFILE_COLUMNS)))
    # Python per note only for what needs the text (sentence breaks, vocabulary look-ups); the arithmetic is
    # done once for the whole batch on flat per-word arrays, segment by segment
    first_word, end_word, chars, note_end_window, oov = [], [], [], [], []
    note_rows = np.empty(len(texts), dtype=np.int64)  # sentences of each note
    offset = 0
    for i, (text, layout) in enumerate(zip(texts, batch.notes)):
        words = layout.words
        sentences = split_sentences(text, words) or [(0, 0)]  # the breaks tokenize_notes encoded with
        note_rows[i] = len(sentences)
        for first, end in sentences:
            first_word.append(offset + first)
            end_word.append(offset + end)
            chars.append(words[end - 1][1] - words[first][0] if end > first else len(text))
        note_end_window += [layout.first_row + layout.n_windows] * len(sentences)
        if vocabulary is not None:
            oov += [text[s:e].lower() not in vocabulary for s, e in words]
        offset += len(words)
    first, end = np.asarray(first_word, dtype=np.int64), np.asarray(end_word, dtype=np.int64)
    n_words = end - first
    has_words = n_words > 0
    rows = np.full((len(first), len(PROFILE_COLUMNS)), np.nan)
    rows[:, 0] = chars

    # windows: each sentence owns the windows from its first word's window up to the next sentence's first
    # window (or its note's end); words without a word-piece (window -1) say nothing
    none = np.iinfo(np.int64).max
    if offset:
        window = np.concatenate([np.where(n.word_window >= 0, n.word_window + n.first_row, none)
                                 for n in batch.notes]).astype(np.int64)
        starts = np.full(len(first), none, dtype=np.int64)
        starts[has_words] = np.minimum.reduceat(window, first[has_words])
    else:
        window, starts = np.zeros(0, dtype=np.int64), np.full(len(first), none, dtype=np.int64)
    following = np.append(np.minimum.accumulate(starts[::-1])[::-1][1:], none)  # earliest later start
    owned = starts < none
    window_end = np.minimum(following, np.asarray(note_end_window, dtype=np.int64))
    n_windows = np.where(owned, window_end - np.where(owned, starts, 0), 0)
    # real pieces (without [CLS]/[SEP]) and unknown pieces per window, then per sentence by prefix sums
    real = batch.attention_mask.sum(axis=1) - 2
    unknown = (batch.input_ids == unk_id).sum(axis=1) if unk_id is not None else np.zeros(len(real), np.int64)
    lo, hi = np.where(owned, starts, 0), np.where(owned, window_end, 0)
    pieces, unknown_pieces = _segment_sums(real, lo, hi), _segment_sums(unknown, lo, hi)
    rows[:, 1], rows[:, 2] = pieces, n_windows
    with np.errstate(invalid="ignore", divide="ignore"):
        rows[:, 3] = np.where(pieces > 0, unknown_pieces / pieces, np.nan)

    if offset:
        tags = np.asarray(list(chain.from_iterable(labels)))
        confidence = np.concatenate([np.asarray(c, dtype=np.float64) for c in confidences])
        sentence_start = np.zeros(offset, dtype=bool)
        sentence_start[first[has_words]] = True
        words = np.maximum(n_words, 1)  # NaN rows are set below; this only avoids dividing by zero
        if vocabulary is not None:
            rows[:, 4] = _segment_sums(np.asarray(oov, dtype=np.float64), first, end) / words
        for column, label in ((5, "D"), (6, "T")):  # an entity starts where its run starts (or a sentence does)
            inside = tags == label
            run_start = inside & (sentence_start | ~np.concatenate(([False], inside[:-1])))
            rows[:, column] = 100.0 * _segment_sums(run_start, first, end) / words
        rows[:, 7] = _segment_sums(confidence, first, end) / words
        rows[has_words, 8] = np.minimum.reduceat(confidence, first[has_words])
        rows[:, 9] = _segment_sums(confidence < LOW_CONFIDENCE, first, end) / words
    rows[~has_words, 4:10] = np.nan
    rows[np.cumsum(note_rows) - note_rows, len(FEATURES)] = note_rows  # a note's first sentence
    return rows


def note_features(
    notes: Sequence[str],
    tokenizer: Any,
    encoder: Encoder,
    vocabulary: AbstractSet[str] | None,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    micro_batch: int = DEFAULT_MICRO_BATCH,
    decoder: str = "viterbi",
    edges: SpanEdges | None = None,
) -> np.ndarray:
    """Profile rows of ``notes`` through the serving path (tokenize, encode, decode, :func:`batch_features`):
    what a served model logs for them; export builds the reference profile with it."""
    batch, decoded = extract_decoded(notes, tokenizer, encoder, max_length, stride, micro_batch, decoder, edges)
    return batch_features(notes, batch, [d.labels for d in decoded], [d.confidence for d in decoded],
                          getattr(tokenizer, "unk_token_id", None), vocabulary)


class FeatureTagger:
    """A served model's pass: each note's entities and the notes' profile rows (:func:`batch_features`: one row
    per sentence, note after note), from one tokenized batch and decoding of ``pipeline``."""

    def __init__(self, pipeline: NerPipeline):
        self.pipeline = pipeline
        self.vocabulary = read_vocabulary(pipeline.version_dir)

    def __call__(self, notes: Sequence[str]) -> tuple[list[list[Entity]], np.ndarray]:
        batch, decoded = self.pipeline.decoded(notes)
        rows = batch_features(notes, batch, [d.labels for d in decoded], [d.confidence for d in decoded],
                              self.pipeline.tokenizer.unk_token_id, self.vocabulary)
        return [d.entities for d in decoded], rows


def profile_columns(rows: np.ndarray) -> tuple[str, ...]:
    """The column names of feature rows: :data:`PROFILE_COLUMNS`, or :data:`FEATURES` alone for rows made
    without the note column (each row is then one note of one sentence)."""
    width = np.shape(rows)[-1] if np.ndim(rows) == 2 else len(PROFILE_COLUMNS)
    if width == len(PROFILE_COLUMNS):
        return PROFILE_COLUMNS
    if width == len(FEATURES):
        return FEATURES
    raise ValueError(f"feature rows need {len(PROFILE_COLUMNS)} or {len(FEATURES)} columns, got {width}")


def features_frame(rows: np.ndarray):  # -> pandas.DataFrame (pandas imported lazily: not on the hot path)
    """The feature rows as a DataFrame with the :func:`profile_columns` columns."""
    import pandas as pd

    columns = profile_columns(rows)
    return pd.DataFrame(np.asarray(rows, dtype=np.float64).reshape(-1, len(columns)), columns=list(columns))
