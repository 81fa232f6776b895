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
* ``oov_word_rate``: share of the words (lower-cased, every digit as 0: :func:`vocabulary_key`) absent from the
  training vocabulary published with the version (``<version_dir>/train_vocabulary.txt``: only words of at least
  :data:`VOCABULARY_MIN_SENTENCES` distinct training sentences, so no rare word of a patient's note leaves in a model
  artifact); NaN when the model version has no vocabulary.
* ``entity_oov_rate``: the same share among the words tagged D or T (NaN without such words): new drug and
  disease names, and misspelt ones, show here long before they move the rate over all words.
* ``treatment_oov_rate``: the same share among the words tagged T alone (NaN without such words): new drug names,
  whose move the disease words (more of them, and as often unseen) dilute in ``entity_oov_rate``
  (benchmarks/results/drift_validation.md). Scored by its mean alone (:data:`MEAN_ONLY_FEATURES`).
* ``misspelling_rate``: share of the words out of that vocabulary yet one edit from a word of it of 4+ letters
  (:func:`~monitoring.vocabulary.is_misspelling`): typing errors, which the rate of all unseen words hides among
  the new names of ordinary text (benchmarks/results/drift_validation.md).
* ``disease_per_100_words``, ``treatment_per_100_words``: entities (maximal runs of one label) per 100 words.
* ``confidence_mean``, ``confidence_min``, ``low_confidence_rate``: the decoded tag's probability per word,
  and the share of words below :data:`LOW_CONFIDENCE`.

And :data:`NOTE_SENTENCES` (packaging, not scored): on a note's first sentence the note's sentence count, NaN
on its other sentences, so a profile still counts notes (the column's non-null values) and how long they are.
Last, :data:`~monitoring.estimation.ESTIMATE_COLUMNS` (not scored): what the estimate of the model's accuracy on
a window is summed from (:mod:`monitoring.estimation`); NaN when the model version has no estimator.

Rates over zero words are NaN (whylogs counts NaNs apart from the distribution).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from medner.decoding import SpanEdges
from medner.inference import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MICRO_BATCH,
    DEFAULT_STRIDE,
    DecodedNote,
    Encoder,
    NerPipeline,
    TokenizedBatch,
    extract_decoded,
)
from medner.labels import OUTSIDE
from medner.spans import split_sentences
from monitoring.estimation import ESTIMATE_COLUMNS, Estimator, sentence_estimates
from monitoring.vocabulary import Vocabulary, is_misspelling, read_vocabulary, vocabulary_key

FEATURES: tuple[str, ...] = (
    "chars", "wordpieces", "windows", "unknown_wordpiece_rate", "oov_word_rate", "disease_per_100_words",
    "treatment_per_100_words", "confidence_mean", "confidence_min", "low_confidence_rate", "entity_oov_rate",
    "misspelling_rate", "treatment_oov_rate",
)
# Scored by their mean shift alone (monitoring.drift.mean_shifts), not by a binned distance: with values on a
# third of the sentences (those with a T word), its distance on a window of 100 one-sentence notes is so
# heavy-tailed that one in-distribution validation window alarmed on it; its mean is what drug names move.
MEAN_ONLY_FEATURES: tuple[str, ...] = ("treatment_oov_rate",)
DISTANCE_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if f not in MEAN_ONLY_FEATURES)
NOTE_SENTENCES = "note_sentences"
PROFILE_COLUMNS: tuple[str, ...] = (*FEATURES, NOTE_SENTENCES, *ESTIMATE_COLUMNS)  # batch_features' rows
COLUMN = {name: index for index, name in enumerate(PROFILE_COLUMNS)}
LOW_CONFIDENCE = 0.9  # a word whose decoded-tag probability is below this counts as low-confidence
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
    vocabulary: Vocabulary | None,
    estimator: Estimator | None = None,
) -> np.ndarray:
    """Profile rows ``(sentences, len(PROFILE_COLUMNS))`` (float64) of the notes of ``batch``, note after note
    and sentence after sentence: ``texts`` are the notes the batch was tokenized from, ``labels`` and
    ``confidences`` each note's decoded word labels and confidences. A note without words is one row. Without an
    ``estimator`` the estimate columns are NaN."""
    if not texts:
        return np.zeros((0, len(PROFILE_COLUMNS)))
    # Python per note only for what needs the text (sentence breaks, vocabulary look-ups); the arithmetic is
    # done once for the whole batch on flat per-word arrays, segment by segment
    first_word, end_word, chars, note_end_window, oov, misspelt = [], [], [], [], [], []
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
            keys = [vocabulary_key(text[s:e]) for s, e in words]
            unseen = [key not in vocabulary for key in keys]
            oov += unseen
            misspelt += [out and is_misspelling(key, vocabulary) for key, out in zip(keys, unseen)]
        offset += len(words)
    first, end = np.asarray(first_word, dtype=np.int64), np.asarray(end_word, dtype=np.int64)
    rows = np.full((len(first), len(PROFILE_COLUMNS)), np.nan)
    rows[:, COLUMN["chars"]] = chars
    _window_columns(rows, batch, first, end, np.asarray(note_end_window, dtype=np.int64), unk_id)
    if offset:
        tags = np.asarray(list(chain.from_iterable(labels)))
        confidence = np.concatenate([np.asarray(c, dtype=np.float64) for c in confidences])
        unseen = (np.asarray(oov, dtype=bool), np.asarray(misspelt, dtype=bool)) if vocabulary is not None else None
        _word_columns(rows, tags, confidence, unseen, first, end, estimator)
    rows[end == first, COLUMN["oov_word_rate"]:COLUMN[NOTE_SENTENCES]] = np.nan  # rates over no words
    rows[np.cumsum(note_rows) - note_rows, COLUMN[NOTE_SENTENCES]] = note_rows  # a note's first sentence
    if estimator is not None and not offset:
        rows[:, COLUMN["entities"]:] = 0.0  # no words: nothing predicted, nothing to find
    return rows


def _window_columns(rows: np.ndarray, batch: TokenizedBatch, first: np.ndarray, end: np.ndarray,
                    note_end_window: np.ndarray, unk_id: int | None) -> None:
    """``wordpieces``, ``windows`` and ``unknown_wordpiece_rate``: each sentence owns the windows from its first
    word's window up to the next sentence's first window (or its note's end); words without a word-piece
    (window -1) say nothing."""
    none = np.iinfo(np.int64).max
    has_words = end > first
    starts = np.full(len(first), none, dtype=np.int64)
    if has_words.any():
        window = np.concatenate([np.where(n.word_window >= 0, n.word_window + n.first_row, none)
                                 for n in batch.notes]).astype(np.int64)
        starts[has_words] = np.minimum.reduceat(window, first[has_words])
    following = np.append(np.minimum.accumulate(starts[::-1])[::-1][1:], none)  # earliest later start
    owned = starts < none
    window_end = np.minimum(following, note_end_window)
    # real pieces (without [CLS]/[SEP]) and unknown pieces per window, then per sentence by prefix sums
    real = batch.attention_mask.sum(axis=1) - 2
    unknown = (batch.input_ids == unk_id).sum(axis=1) if unk_id is not None else np.zeros(len(real), np.int64)
    lo, hi = np.where(owned, starts, 0), np.where(owned, window_end, 0)
    pieces, unknown_pieces = _segment_sums(real, lo, hi), _segment_sums(unknown, lo, hi)
    rows[:, COLUMN["wordpieces"]] = pieces
    rows[:, COLUMN["windows"]] = np.where(owned, window_end - lo, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows[:, COLUMN["unknown_wordpiece_rate"]] = np.where(pieces > 0, unknown_pieces / pieces, np.nan)


def _word_columns(rows: np.ndarray, tags: np.ndarray, confidence: np.ndarray,
                  unseen: tuple[np.ndarray, np.ndarray] | None, first: np.ndarray, end: np.ndarray,
                  estimator: Estimator | None) -> None:
    """The columns computed from the batch's flat per-word tags, confidences, and out-of-vocabulary and
    misspelling flags (``unseen``; None: no vocabulary), sentence by sentence (``first``/``end`` words)."""
    has_words = end > first
    sentence_start = np.zeros(len(tags), dtype=bool)
    sentence_start[first[has_words]] = True
    words = np.maximum(end - first, 1)  # rows over no words are NaN (the caller); this only avoids dividing by 0
    entity = tags != OUTSIDE
    oov = unseen[0] if unseen is not None else None
    if unseen is not None:
        rows[:, COLUMN["oov_word_rate"]] = _segment_sums(oov, first, end) / words
        rows[:, COLUMN["misspelling_rate"]] = _segment_sums(unseen[1], first, end) / words
        entity_words, treatment = _segment_sums(entity, first, end), tags == "T"
        with np.errstate(invalid="ignore", divide="ignore"):  # no such word: NaN, no value
            rows[:, COLUMN["entity_oov_rate"]] = _segment_sums(oov & entity, first, end) / entity_words
            rows[:, COLUMN["treatment_oov_rate"]] = (_segment_sums(oov & treatment, first, end)
                                                     / _segment_sums(treatment, first, end))
    # an entity starts where a run of one label starts, or where a sentence does
    run_start = entity & (sentence_start | np.concatenate(([True], tags[1:] != tags[:-1])))
    for column, label in (("disease_per_100_words", "D"), ("treatment_per_100_words", "T")):
        rows[:, COLUMN[column]] = 100.0 * _segment_sums(run_start & (tags == label), first, end) / words
    rows[:, COLUMN["confidence_mean"]] = _segment_sums(confidence, first, end) / words
    rows[has_words, COLUMN["confidence_min"]] = np.minimum.reduceat(confidence, first[has_words])
    rows[:, COLUMN["low_confidence_rate"]] = _segment_sums(confidence < LOW_CONFIDENCE, first, end) / words
    if estimator is not None:
        rows[:, COLUMN["entities"]:] = _estimates(estimator, entity, run_start, confidence, oov, first, end,
                                                  rows[:, COLUMN["oov_word_rate"]] if oov is not None else None)


def _estimates(estimator: Estimator, entity: np.ndarray, run_start: np.ndarray, confidence: np.ndarray,
               oov: np.ndarray | None, first: np.ndarray, end: np.ndarray, unknown_share: np.ndarray | None
               ) -> np.ndarray:
    """The estimate columns of each sentence from the batch's flat per-word entity flags, entity starts (runs of
    one label, cut at sentence starts), confidences and out-of-vocabulary flags; each entity scored by its words'
    mean confidence, as served entities are, and out of vocabulary when one of its words is; the O words' D/T mass
    on unknown words apart (``Estimator.missed_per_mass_oov``), with each sentence's ``unknown_share`` of such words
    (``Estimator.missed_growth``)."""
    run = np.cumsum(run_start) - 1  # the entity each entity word belongs to
    runs = int(run_start.sum())
    scores = (np.bincount(run[entity], weights=confidence[entity], minlength=runs)
              / np.maximum(np.bincount(run[entity], minlength=runs), 1))
    entity_oov = np.bincount(run[entity], weights=oov[entity], minlength=runs) > 0 if oov is not None else None
    sentence_of_run = np.searchsorted(first, np.flatnonzero(run_start), side="right") - 1
    outside = np.where(entity, 0.0, 1.0 - confidence)
    outside_mass_oov = _segment_sums(np.where(oov, outside, 0.0), first, end) if oov is not None else None
    return sentence_estimates(estimator, scores, sentence_of_run, _segment_sums(outside, first, end), entity_oov,
                              outside_mass_oov, unknown_share)


def note_features(
    notes: Sequence[str],
    tokenizer: Any,
    encoder: Encoder,
    vocabulary: Vocabulary | None,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    micro_batch: int = DEFAULT_MICRO_BATCH,
    decoder: str = "viterbi",
    edges: SpanEdges | None = None,
    estimator: Estimator | None = None,
) -> np.ndarray:
    """Profile rows of ``notes`` through the serving path (tokenize, encode, decode, :func:`batch_features`):
    what a served model logs for them; export builds the reference profile with it."""
    batch, decoded = extract_decoded(notes, tokenizer, encoder, max_length, stride, micro_batch, decoder, edges)
    return batch_features(notes, batch, [d.labels for d in decoded], [d.confidence for d in decoded],
                          getattr(tokenizer, "unk_token_id", None), vocabulary, estimator)


class VersionFeatures:
    """The profile rows of notes a served version decoded (:func:`batch_features`), with the version's published
    vocabulary and accuracy estimator (``version_dir``) and its tokenizer's unknown word-piece ``unk_id``: what a
    served model logs, wherever the notes were tokenized and encoded (the GPU ensemble's ``ner_decode`` gets the
    batch from the tensors between the models, :func:`medner.inference.unpack_notes`)."""

    def __init__(self, version_dir: str | Path, unk_id: int | None):
        self.vocabulary = read_vocabulary(version_dir)
        self.estimator = Estimator.load(version_dir)
        self.unk_id = unk_id

    def __call__(self, notes: Sequence[str], batch: TokenizedBatch, decoded: Sequence[DecodedNote]) -> np.ndarray:
        return batch_features(notes, batch, [d.labels for d in decoded], [d.confidence for d in decoded],
                              self.unk_id, self.vocabulary, self.estimator)


class FeatureTagger:
    """A served model's pass: each note's decoding (entities, uncertainty) and the notes' profile rows
    (:class:`VersionFeatures`: one row per sentence, note after note), from one tokenized batch and decoding of
    ``pipeline``."""

    def __init__(self, pipeline: NerPipeline):
        self.pipeline = pipeline
        self.features = VersionFeatures(pipeline.version_dir, pipeline.tokenizer.unk_token_id)

    def __call__(self, notes: Sequence[str]) -> tuple[list[DecodedNote], np.ndarray]:
        batch, decoded = self.pipeline.decoded(notes)
        return decoded, self.features(notes, batch, decoded)


def profile_columns(rows: np.ndarray) -> tuple[str, ...]:
    """The column names of feature rows: :data:`PROFILE_COLUMNS`; without the estimate columns (rows written
    before them); or :data:`FEATURES` alone for rows made without the note column (each row is then one note of
    one sentence)."""
    width = np.shape(rows)[-1] if np.ndim(rows) == 2 else len(PROFILE_COLUMNS)
    known = {len(columns): columns for columns in (PROFILE_COLUMNS, PROFILE_COLUMNS[:COLUMN["entities"]], FEATURES)}
    if width not in known:
        raise ValueError(f"feature rows need {' or '.join(map(str, sorted(known)))} columns, got {width}")
    return known[width]


def features_frame(rows: np.ndarray):  # -> pandas.DataFrame (pandas imported lazily: not on the hot path)
    """The feature rows as a DataFrame with the :func:`profile_columns` columns."""
    import pandas as pd

    columns = profile_columns(rows)
    return pd.DataFrame(np.asarray(rows, dtype=np.float64).reshape(-1, len(columns)), columns=list(columns))
