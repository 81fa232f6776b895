"""Conversion between token labels and character-offset spans.

A *token span* is ``(first_token, end_token, label)`` with ``end_token`` exclusive; a *char span*
is ``(start, end, label)`` into a text, ``end`` exclusive. Raw text is split into words by
:func:`split_words`, the same splitter the JSONL reader and serving use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from medner.labels import OUTSIDE

# Words and single punctuation marks, like the BeHealthy tokenisation ("cancer," -> "cancer", ",").
_WORD_RE = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


class Span(NamedTuple):
    start: int
    end: int
    label: str


def split_words(text: str) -> list[tuple[int, int]]:
    """Character offsets ``(start, end)`` of each word and punctuation mark in ``text``."""
    return [m.span() for m in _WORD_RE.finditer(text)]


_SENTENCE_END = {".", "!", "?"}


def split_sentences(text: str, words: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentences as word ranges ``(first, end)``: a break follows ``.``/``!``/``?`` when the next word
    starts with an upper-case letter or a digit, and any line break between two words is a break.

    The tagger is trained on single sentences; encoding a note sentence by sentence keeps it in that
    regime (a long note encoded in 512-piece windows lost many of its entities).
    """
    sentences, first = [], 0
    for i in range(1, len(words)):
        gap = text[words[i - 1][1]: words[i][0]]
        previous = text[words[i - 1][0]: words[i - 1][1]]
        following = text[words[i][0]]
        if "\n" in gap or (previous in _SENTENCE_END and (following.isupper() or following.isdigit())):
            sentences.append((first, i))
            first = i
    if words:
        sentences.append((first, len(words)))
    return sentences


def labels_to_spans(labels: Sequence[str]) -> list[Span]:
    """O/D/T token labels -> token spans, one per maximal run of one label."""
    spans: list[Span] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if labels[start] != OUTSIDE:
                spans.append(Span(start, i, labels[start]))
            start = i
    return spans


def spans_to_labels(spans: Sequence[Span], n_tokens: int) -> list[str]:
    """Token spans -> O/D/T token labels (the inverse of :func:`labels_to_spans`)."""
    labels = [OUTSIDE] * n_tokens
    for start, end, label in spans:
        labels[start:end] = [label] * (end - start)
    return labels


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Detokenise with single spaces; returns the text and each token's character offsets."""
    offsets: list[tuple[int, int]] = []
    position = 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return " ".join(tokens), offsets


def token_spans_to_char_spans(
    spans: Sequence[Span], offsets: Sequence[tuple[int, int]]
) -> list[Span]:
    """Token spans -> character spans, given each token's character offsets."""
    return [Span(offsets[s][0], offsets[e - 1][1], label) for s, e, label in spans]


def overlapped_labels(spans: Sequence[Span], offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Each token's label: that of the last character span overlapping it, OUTSIDE where none does. Unlike
    :func:`char_spans_to_token_spans`, spans need not fall on token boundaries (a served model's entities
    scored against gold tokens)."""
    labels = [OUTSIDE] * len(offsets)
    for start, end, label in spans:
        for i, (token_start, token_end) in enumerate(offsets):
            if token_start < end and start < token_end:
                labels[i] = label
    return labels


def char_spans_to_token_spans(
    spans: Sequence[Span], offsets: Sequence[tuple[int, int]]
) -> list[Span]:
    """Character spans -> token spans. Raises ``ValueError`` if a span does not start and end on
    token boundaries (an annotation that cuts a word in two cannot be learned word by word)."""
    starts = {start: i for i, (start, _) in enumerate(offsets)}
    ends = {end: i + 1 for i, (_, end) in enumerate(offsets)}
    token_spans = []
    for start, end, label in spans:
        if start not in starts or end not in ends or starts[start] >= ends[end]:
            raise ValueError(f"entity [{start}, {end}) does not start and end on word boundaries")
        token_spans.append(Span(starts[start], ends[end], label))
    return token_spans


def predicted_labels(sentences: Sequence[Sequence[str]], extract: Callable[[list[str]], list], batch: int = 32
                     ) -> list[list[str]]:
    """O/D/T labels per token of pre-split ``sentences`` from a served model's ``extract`` (notes in, each note's
    entities out): each sentence is sent as a note (tokens joined by spaces) and each entity's characters label the
    tokens they overlap. How live quality and the acceptance gate score a model the way clients see it."""
    predictions: list[list[str]] = []
    for first in range(0, len(sentences), batch):
        joined = [join_tokens(tokens) for tokens in sentences[first: first + batch]]
        for (_, offsets), entities in zip(joined, extract([text for text, _ in joined])):
            predictions.append(overlapped_labels([Span(e["start"], e["end"], e["label"]) for e in entities], offsets))
    return predictions
