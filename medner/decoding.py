"""Word-level decoding of tag scores into O/D/T labels.

Training evaluation and serving both call :func:`decode`, so what is measured is what is served.
``viterbi`` finds the best IOB2-valid tag path (an ``I-X`` only after ``B-X``/``I-X``); on BeHealthy it beats
plain argmax (benchmarks/results/model.md). Given :class:`SpanEdges` learned from the training data, it also
keeps entities from starting or ending on words that never start or end one there (``,``, ``and``, ``of``...;
benchmarks/results/accuracy.md), and for a model trained with a CRF layer (:mod:`medner.crf_layer`) it adds the
tag transition scores learned with it, which the span edges carry. The result is read as O/D/T runs, as the corpus
is annotated.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from medner.labels import BIO_TAGS, OUTSIDE, allowed_transition, from_bio
from medner.spans import labels_to_spans

Decoder = Literal["viterbi", "argmax"]
SPAN_EDGES_FILE = "span_edges.json"  # beside the tokenizer files, in a model folder and a served version
SPAN_EDGES_MIN_COUNT = 20  # a word is ruled out as an edge only after this many sightings in train


@cache
def _transition_masks() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Additive masks (0 allowed, -inf forbidden): start -> tag; previous tag -> tag; previous tag -> tag when the
    previous word may not end an entity (an entity must go on); and the tags a word may not start an entity with."""
    forbidden = -np.inf
    start = np.array([0.0 if allowed_transition(None, t) else forbidden for t in BIO_TAGS])
    pairs = np.array(
        [[0.0 if allowed_transition(p, t) else forbidden for t in BIO_TAGS] for p in BIO_TAGS]
    )
    must_go_on = np.array([[0.0 if p == OUTSIDE or t == f"I-{p[2:]}" else forbidden for t in BIO_TAGS]
                           for p in BIO_TAGS])
    begins = np.array([forbidden if t.startswith("B-") else 0.0 for t in BIO_TAGS])
    return start, pairs, pairs + must_go_on, begins


def iob2_constraints() -> tuple[np.ndarray, np.ndarray]:
    """The IOB2 rules as additive scores (0 allowed, -inf forbidden): start -> tag, and previous tag -> tag, in
    ``BIO_TAGS`` order; what a CRF layer learns its transition scores on top of."""
    start, pairs, _, _ = _transition_masks()
    return start, pairs


@dataclass(frozen=True)
class SpanEdges:
    """Words (lower-cased) that never start, or never end, an entity in the training data although seen
    there at least ``SPAN_EDGES_MIN_COUNT`` times: the corpus's span conventions, for the decoder. For a model
    trained with a CRF layer, also its learned ``start_scores`` (a sentence starting with each tag) and
    ``transition_scores`` (each tag after each other), in ``BIO_TAGS`` order, which Viterbi adds to its IOB2 rules:
    saved and loaded with the edges, so every decoder of the model reads them."""

    never_first: frozenset[str] = frozenset()
    never_last: frozenset[str] = frozenset()
    start_scores: tuple[float, ...] | None = None
    transition_scores: tuple[tuple[float, ...], ...] | None = None

    @cached_property
    def learned(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The learned (start, transition) scores as arrays, or None for a model trained without a CRF layer."""
        if self.start_scores is None or self.transition_scores is None:
            return None
        return np.asarray(self.start_scores, dtype=np.float64), np.asarray(self.transition_scores, dtype=np.float64)

    def with_learned(self, start: Sequence[float], transitions: Sequence[Sequence[float]]) -> SpanEdges:
        """These edges carrying a CRF layer's (start, transition) scores (arrays or nested sequences)."""
        return replace(self, start_scores=tuple(float(v) for v in start),
                       transition_scores=tuple(tuple(float(v) for v in row) for row in transitions))

    @classmethod
    def learn(cls, sentences: Iterable[tuple[Sequence[str], Sequence[str]]],
              min_count: int = SPAN_EDGES_MIN_COUNT) -> SpanEdges:
        """From ``(tokens, labels)`` pairs (annotated sentences)."""
        seen, first, last = Counter(), Counter(), Counter()
        for tokens, labels in sentences:
            seen.update(t.lower() for t in tokens)
            for start, end, _ in labels_to_spans(labels):
                first[tokens[start].lower()] += 1
                last[tokens[end - 1].lower()] += 1
        frequent = [w for w, n in seen.items() if n >= min_count]
        return cls(frozenset(w for w in frequent if not first[w]), frozenset(w for w in frequent if not last[w]))

    def to_json(self) -> str:
        learned = ({"start_scores": list(self.start_scores), "transition_scores": [list(r) for r in
                                                                                self.transition_scores]}
                   if self.learned is not None else {})
        return json.dumps({"never_first": sorted(self.never_first), "never_last": sorted(self.never_last), **learned},
                          indent=0)

    @classmethod
    def load(cls, folder: Path | str) -> SpanEdges | None:
        """The edges saved in a model folder, or None where it has none (models exported before them)."""
        path = Path(folder) / SPAN_EDGES_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        learned = data.get("transition_scores")
        return cls(frozenset(data["never_first"]), frozenset(data["never_last"]),
                   tuple(data["start_scores"]) if learned is not None else None,
                   tuple(tuple(row) for row in learned) if learned is not None else None)

    def masks(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per word: may not start an entity; may not end one."""
        lower = [w.lower() for w in words]
        return (np.fromiter((w in self.never_first for w in lower), bool, len(lower)),
                np.fromiter((w in self.never_last for w in lower), bool, len(lower)))


def mean_learned(edges: Sequence[SpanEdges | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean (start, transition) scores of models trained with a CRF layer (their span edges), None when none
    was; raises ValueError when some were and some were not (one recipe per ensemble)."""
    learned = [e.learned for e in edges if e is not None and e.learned is not None]
    if not learned:
        return None
    if len(learned) < len(edges):
        raise ValueError("some members were trained with a CRF layer and some without: one recipe per ensemble")
    return np.mean([s[0] for s in learned], axis=0), np.mean([s[1] for s in learned], axis=0)


def viterbi(log_probs: np.ndarray, no_start: np.ndarray | None = None, no_end: np.ndarray | None = None,
            learned: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Best IOB2-valid tag ids for one sequence of per-word tag log-probabilities ``(n, tags)``; words flagged
    in ``no_start`` / ``no_end`` neither start nor end an entity (the all-O path always remains); ``learned``:
    a CRF layer's (start, transition) scores, added to the rules (:attr:`SpanEdges.learned`)."""
    n_words = log_probs.shape[0]
    if n_words == 0:
        return np.zeros(0, dtype=np.int64)
    start, pairs, pairs_going_on, begins = _transition_masks()
    if learned is not None:
        start, pairs, pairs_going_on = start + learned[0], pairs + learned[1], pairs_going_on + learned[1]
    if no_start is not None and no_start.any():
        log_probs = log_probs + np.where(no_start[:, None], begins, 0.0)
    ends = no_end if no_end is not None and no_end.any() else None
    score = log_probs[0] + start
    backpointers = np.empty((n_words, len(BIO_TAGS)), dtype=np.int64)
    for i in range(1, n_words):
        candidates = score[:, None] + (pairs_going_on if ends is not None and ends[i - 1] else pairs)
        backpointers[i] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[i]
    if ends is not None and ends[-1]:
        score = score + _transition_masks()[2][:, 0]  # the last word ends whatever entity it is in (a rule)
    path = np.empty(n_words, dtype=np.int64)
    path[-1] = int(score.argmax())
    for i in range(n_words - 1, 0, -1):
        path[i - 1] = backpointers[i, path[i]]
    return path


def marginals(sentences: Sequence[np.ndarray], learned: tuple[np.ndarray, np.ndarray] | None = None
              ) -> list[np.ndarray]:
    """Each word's tag log-probabilities over the IOB2-valid paths of its sentence (forward-backward; one
    ``(n, tags)`` array per sentence of per-word tag log-probabilities): the per-word distribution of the sequence
    model Viterbi decodes (a CRF layer's ``learned`` scores added to the rules), for a teacher whose word logits
    alone are not one (:func:`medner.distill.teacher_log_probs`) and for a served CRF model's confidences
    (:func:`word_confidences`). In probability space, each step rescaled to sum 1, all sentences a step at a time:
    numpy's cost per call is paid once per word position, not once per word (it is on the serving path:
    benchmarks/results/hot_path_crf_marginals.md)."""
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    width = int(lengths.max()) if len(lengths) else 0
    if width == 0:
        return [np.zeros((0, len(BIO_TAGS))) for _ in sentences]
    start, pairs, _, _ = _transition_masks()
    if learned is not None:
        start, pairs = start + learned[0], pairs + learned[1]
    steps = np.exp(pairs)  # forbidden transitions: 0
    emissions = np.ones((len(sentences), width, len(BIO_TAGS)))  # past a sentence's end: ones, never read
    for row, sentence in zip(emissions, sentences):
        if len(sentence):
            row[:len(sentence)] = np.exp(sentence - sentence.max(axis=1, keepdims=True))
    forward = np.empty_like(emissions)
    backward = np.empty_like(emissions)
    alpha = np.exp(start - start.max()) * emissions[:, 0]
    forward[:, 0] = alpha / alpha.sum(axis=1, keepdims=True)
    for i in range(1, width):
        alpha = (forward[:, i - 1] @ steps) * emissions[:, i]
        forward[:, i] = alpha / alpha.sum(axis=1, keepdims=True)
    backward[:, -1] = 1.0
    ended = lengths - 1  # at and past its last word, a sentence's backward is 1
    for i in range(width - 2, -1, -1):
        beta = (emissions[:, i + 1] * backward[:, i + 1]) @ steps.T
        beta /= beta.sum(axis=1, keepdims=True)
        beta[i >= ended] = 1.0
        backward[:, i] = beta
    joint = forward * backward
    with np.errstate(divide="ignore"):
        log_joint = np.log(joint / joint.sum(axis=2, keepdims=True))
    return [log_joint[k, :n] for k, n in enumerate(lengths)]


def word_confidences(log_probs: Sequence[np.ndarray], edges: SpanEdges | None = None,
                     sentences: Sequence[Sequence[tuple[int, int]] | None] | None = None) -> list[np.ndarray]:
    """Of each note's per-word tag log-probabilities, each word's probability of its most likely tag (what entity
    scores average and the monitor reads): the word's own distribution for a model trained without a CRF layer;
    for one trained with it (``edges`` carry its learned scores), the :func:`marginals` of its sequence model
    within each of the note's ``sentences`` (word ranges; None: one), as Viterbi decodes them, because its word
    logits alone were never trained as a distribution (benchmarks/results/drift_crf/). Span-edge rules are not
    part of the marginals."""
    learned = edges.learned if edges is not None else None
    if learned is None:
        return [np.exp(scores.max(axis=-1)) for scores in log_probs]
    ranges = [note_sentences or [(0, len(scores))]
              for scores, note_sentences in zip(log_probs, sentences or [None] * len(log_probs))]
    best = iter(np.exp(m.max(axis=-1)) for m in marginals([scores[a:b] for scores, note in zip(log_probs, ranges)
                                                           for a, b in note], learned))
    return [np.concatenate([next(best) for _ in note]) for note in ranges]


def decode(log_probs: np.ndarray, decoder: Decoder = "viterbi", words: Sequence[str] | None = None,
           edges: SpanEdges | None = None, sentences: Sequence[tuple[int, int]] | None = None) -> list[str]:
    """Per-word tag log-probabilities ``(n_words, len(BIO_TAGS))`` -> O/D/T labels; ``viterbi`` also keeps to
    ``edges`` where the ``words`` are given, sentence by sentence (``sentences``: word ranges; default: one), as
    training saw them: an entity must not run on into the next sentence to avoid ending on a ruled-out word."""
    learned = edges.learned if edges is not None else None
    if decoder == "viterbi" and edges and words is not None:
        no_start, no_end = edges.masks(words)
        ids = np.concatenate([viterbi(log_probs[a:b], no_start[a:b], no_end[a:b], learned)
                              for a, b in sentences or [(0, len(words))]] or [np.zeros(0, dtype=np.int64)])
    elif decoder == "viterbi":
        ids = viterbi(log_probs, learned=learned)
    elif decoder == "argmax":
        ids = log_probs.argmax(axis=-1)
    else:
        raise ValueError(f"unknown decoding method {decoder!r}; expected 'viterbi' or 'argmax'")
    return from_bio([BIO_TAGS[i] for i in ids])
