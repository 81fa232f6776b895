"""Per-note monitoring features: numbers that reveal drift for this task, never the note's text.

One row per note, the columns of :data:`FEATURES` in that order, computed from what the serving hot path
already has (the tokenized batch and the decoded word labels and confidences of
:func:`medner.inference.extract_decoded`): nothing is tokenized or encoded twice.

* ``chars``, ``wordpieces``, ``windows``: size of the note; ``windows`` > 1 means a sentence longer than the
  encoder's window.
* ``unknown_wordpiece_rate``: share of the note's word-pieces the tokenizer maps to its unknown token (counted
  over the encoder windows, where overlapping windows count a piece twice on both sides of the ratio).
* ``oov_word_rate``: share of the note's words (lower-cased) absent from the training vocabulary
  (``<version_dir>/train_vocabulary.txt``); NaN when the model version has no vocabulary.
* ``disease_per_100_words``, ``treatment_per_100_words``: entities (maximal runs of one label) per 100 words.
* ``confidence_mean``, ``confidence_min``, ``low_confidence_rate``: the decoded tag's probability per word,
  and the share of words below :data:`LOW_CONFIDENCE`.

Rates over zero words are NaN (whylogs counts NaNs apart from the distribution).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np

from medner.inference import TokenizedBatch

FEATURES: tuple[str, ...] = (
    "chars", "wordpieces", "windows", "unknown_wordpiece_rate", "oov_word_rate", "disease_per_100_words",
    "treatment_per_100_words", "confidence_mean", "confidence_min", "low_confidence_rate",
)
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


def _runs(labels: Sequence[str], label: str) -> int:
    """Number of maximal runs of ``label`` (entities of that type, as the decoder reads them)."""
    return sum(1 for i, tag in enumerate(labels) if tag == label and (i == 0 or labels[i - 1] != label))


def batch_features(
    texts: Sequence[str],
    batch: TokenizedBatch,
    labels: Sequence[Sequence[str]],
    confidences: Sequence[np.ndarray],
    unk_id: int | None,
    vocabulary: AbstractSet[str] | None,
) -> np.ndarray:
    """Features ``(notes, len(FEATURES))`` (float64) of the notes of ``batch``: ``texts`` are the notes the
    batch was tokenized from, ``labels``/``confidences`` each note's decoded word labels and confidences."""
    rows = np.full((len(texts), len(FEATURES)), np.nan)
    # per window: unknown pieces and real pieces (without [CLS]/[SEP]), one vectorised pass over the batch
    real = batch.attention_mask.sum(axis=1) - 2
    unknown = (batch.input_ids == unk_id).sum(axis=1) if unk_id is not None else np.zeros(len(real), np.int64)
    for i, (text, layout, note_labels, confidence) in enumerate(zip(texts, batch.notes, labels, confidences)):
        n_words = len(layout.words)
        window_slice = slice(layout.first_rows, layout.first_rows + layout.n_windows)
        pieces = int(real[window_slice].sum())
        row = rows[i]
        row[0], row[1], row[2] = len(text), layout.pieces, layout.n_windows
        row[3] = unknown[window_slice].sum() / pieces if pieces > 0 else math.nan
        if n_words:
            if vocabulary is not None:
                row[4] = sum(1 for s, e in layout.words if text[s:e].lower() not in vocabulary) / n_words
            row[5] = 100.0 * _runs(note_labels, "D") / n_words
            row[6] = 100.0 * _runs(note_labels, "T") / n_words
            row[7], row[8] = float(confidence.mean()), float(confidence.min())
            row[9] = float((confidence < LOW_CONFIDENCE).mean())
    return rows


def features_frame(rows: np.ndarray):  # -> pandas.DataFrame (pandas imported lazily: not on the hot path)
    """The feature rows as a DataFrame with the :data:`FEATURES` columns."""
    import pandas as pd

    return pd.DataFrame(np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES)), columns=list(FEATURES))


def sentence_features(
    sentences: Sequence[Sequence[str]],
    batch: TokenizedBatch,
    logits: np.ndarray,
    unk_id: int | None,
    vocabulary: AbstractSet[str] | None,
    method: str = "viterbi",
) -> np.ndarray:
    """Features of pre-split sentences (each one note) from :func:`medner.inference.encode_sentences`' output:
    the reference profile's rows, computed from the export gates' windows and logits."""
    from medner.inference import note_labels, note_rows
    from medner.spans import join_tokens

    decoded = [note_labels(layout, note_rows(logits, layout), method) for layout in batch.notes]
    return batch_features([join_tokens(tokens)[0] for tokens in sentences], batch, [d[0] for d in decoded],
                          [d[1] for d in decoded], unk_id, vocabulary)
