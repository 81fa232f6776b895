"""Word-level decoding of tag scores into O/D/T labels.

Training evaluation and serving both call :func:`decode`, so what is measured is what is served.
``viterbi`` finds the best IOB2-valid tag path (an ``I-X`` only after ``B-X``/``I-X``); on BeHealthy it beats
plain argmax (benchmarks/results/model.md). The result is read as O/D/T runs, as the
corpus is annotated.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

from medner.labels import BIO_TAGS, allowed_transition, from_bio

Decoder = Literal["viterbi", "argmax"]


@cache
def _transition_masks() -> tuple[np.ndarray, np.ndarray]:
    """Additive masks (0 allowed, -inf forbidden): start -> tag, and previous tag -> tag."""
    forbidden = -np.inf
    start = np.array([0.0 if allowed_transition(None, t) else forbidden for t in BIO_TAGS])
    pairs = np.array(
        [[0.0 if allowed_transition(p, t) else forbidden for t in BIO_TAGS] for p in BIO_TAGS]
    )
    return start, pairs


def viterbi(log_probs: np.ndarray) -> np.ndarray:
    """Best IOB2-valid tag ids for one sequence of per-word tag log-probabilities ``(n, tags)``."""
    n_words = log_probs.shape[0]
    if n_words == 0:
        return np.zeros(0, dtype=np.int64)
    start, pairs = _transition_masks()
    score = log_probs[0] + start
    backpointers = np.empty((n_words, len(BIO_TAGS)), dtype=np.int64)
    for i in range(1, n_words):
        candidates = score[:, None] + pairs  # previous x current
        backpointers[i] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[i]
    path = np.empty(n_words, dtype=np.int64)
    path[-1] = int(score.argmax())
    for i in range(n_words - 1, 0, -1):
        path[i - 1] = backpointers[i, path[i]]
    return path


def decode(log_probs: np.ndarray, decoder: Decoder = "viterbi") -> list[str]:
    """Per-word tag log-probabilities ``(n_words, len(BIO_TAGS))`` -> O/D/T labels."""
    if decoder == "viterbi":
        ids = viterbi(log_probs)
    elif decoder == "argmax":
        ids = log_probs.argmax(axis=-1)
    else:
        raise ValueError(f"unknown decoding method {decoder!r}; expected 'viterbi' or 'argmax'")
    return from_bio([BIO_TAGS[i] for i in ids])
