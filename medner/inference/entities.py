"""Encoder logits to entities: each word is scored by its first word-piece in the window where it sits
furthest from an edge, the note is decoded with :func:`medner.decoding.decode` (the decoder training
is evaluated with), and runs of one label become entities with character offsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

import numpy as np

from medner.decoding import SpanEdges, decode, word_confidences
from medner.inference.windows import NoteWindows
from medner.labels import BIO_TAGS, OUTSIDE
from medner.spans import labels_to_spans, split_sentences, token_spans_to_char_spans


class Entity(TypedDict):
    label: str
    start: int
    end: int
    text: str
    score: float


class TaggedNote(NamedTuple):
    """What a client answers for one note when asked for more than its entities."""

    entities: list[Entity]
    uncertainty: float | None  # DecodedNote.uncertainty; None from a server whose model does not send it


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def note_word_log_probs(layout: NoteWindows, window_logits: np.ndarray) -> np.ndarray:
    """Per-word tag log-probabilities of one note from its windows' ``(windows, seq, tags)`` logits.

    Words without a word-piece (characters the tokenizer drops) get a confident O.
    """
    window_log_probs = log_softmax(window_logits.astype(np.float32))
    scores = np.full((len(layout.words), len(BIO_TAGS)), np.log(1e-9))
    scores[:, 0] = 0.0
    has_piece = layout.word_window >= 0
    scores[has_piece] = window_log_probs[layout.word_window[has_piece], layout.word_position[has_piece]]
    return scores


@dataclass
class DecodedNote:
    """What decoding saw of one note (monitoring features are computed from it, not from a second pass)."""

    labels: list[str]  # per word
    confidence: np.ndarray  # per word: probability of its best tag (medner.decoding.word_confidences)
    entities: list[Entity]

    @property
    def uncertainty(self) -> float:
        """How likely the model missed a name in the note: the largest D/T probability on a word it tagged O (1 -
        that word's best-tag probability); 0 for a note without such words. What the review queue orders notes by:
        of the per-note orders simulated, reviewing notes by it taught the model most
        (benchmarks/results/review_loop.md)."""
        return 1.0 - min((c for label, c in zip(self.labels, self.confidence.tolist()) if label == OUTSIDE),
                         default=1.0)


def note_words(text: str, layout: NoteWindows) -> list[str]:
    """The words of one note, as :class:`~medner.decoding.SpanEdges` read them."""
    return [text[start:end] for start, end in layout.words]


def decode_notes(texts: Sequence[str], layouts: Sequence[NoteWindows], window_logits: Sequence[np.ndarray],
                 decoder: str = "viterbi", edges: SpanEdges | None = None) -> list[DecodedNote]:
    """Notes decoded: word labels and confidences, entities with character offsets into each text;
    ``window_logits``: each note's rows of the encoder output. The confidences of all the notes are computed
    together (a CRF model's marginals, a step at a time over every sentence)."""
    word_scores, labels = [], []
    for text, layout, logits in zip(texts, layouts, window_logits):
        if edges and layout.sentences is None:  # a layout sent between Triton models carries no sentences
            layout.sentences = split_sentences(text, layout.words)
        scores = note_word_log_probs(layout, logits)
        word_scores.append(scores)
        labels.append(decode(scores, decoder, note_words(text, layout) if edges else None, edges, layout.sentences))
    confidences = word_confidences(word_scores, edges, [layout.sentences for layout in layouts])
    return [DecodedNote(word_labels, confidence, note_entities(text, layout, word_labels, confidence))
            for text, layout, word_labels, confidence in zip(texts, layouts, labels, confidences)]


def note_entities(text: str, layout: NoteWindows, labels: Sequence[str], confidence: np.ndarray) -> list[Entity]:
    """Entities of one note from its decoded word labels and confidences (:func:`decode_notes`)."""
    word_spans = labels_to_spans(labels)
    return [Entity(label=label, start=start, end=end, text=text[start:end],
                   score=round(float(confidence[first:last].mean()), 4))
            for (first, last, _), (start, end, label) in zip(word_spans,
                                                             token_spans_to_char_spans(word_spans, layout.words))]
