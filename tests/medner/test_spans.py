from hypothesis import given
from hypothesis import strategies as st

from medner.labels import FILE_LABELS
from medner.spans import (
    Span,
    char_spans_to_token_spans,
    join_tokens,
    labels_to_spans,
    overlapped_labels,
    spans_to_labels,
    split_words,
    token_spans_to_char_spans,
)

label_lists = st.lists(st.sampled_from(FILE_LABELS), max_size=40)
words = st.text(alphabet=st.characters(categories=["L", "Nd"]), min_size=1, max_size=8)


def test_labels_to_spans_example() -> None:
    assert labels_to_spans(["D", "D", "O", "T", "D"]) == [Span(0, 2, "D"), Span(3, 4, "T"), Span(4, 5, "D")]


def test_split_words_keeps_offsets_and_splits_punctuation() -> None:
    text = "Non-small-cell cancer, treated (2x) with 5-FU."
    assert [text[s:e] for s, e in split_words(text)] == [
        "Non-small-cell", "cancer", ",", "treated", "(", "2x", ")", "with", "5-FU", "."]


@given(label_lists)
def test_labels_spans_round_trip(labels: list[str]) -> None:
    spans = labels_to_spans(labels)
    assert spans_to_labels(spans, len(labels)) == labels
    assert all(s.end > s.start and s.label != "O" for s in spans)
    # maximal runs: neighbours of different spans never share a label when touching
    assert all(not (a.end == b.start and a.label == b.label) for a, b in zip(spans, spans[1:]))


@given(st.lists(st.tuples(words, st.sampled_from(FILE_LABELS)), min_size=1, max_size=30))
def test_char_spans_round_trip(pairs: list[tuple[str, str]]) -> None:
    tokens = [t for t, _ in pairs]
    labels = [lab for _, lab in pairs]
    text, offsets = join_tokens(tokens)
    assert [text[s:e] for s, e in offsets] == tokens
    assert split_words(text) == offsets
    char_spans = token_spans_to_char_spans(labels_to_spans(labels), offsets)
    for start, end, _ in char_spans:
        assert text[start:end] == text[start:end].strip()
    assert spans_to_labels(char_spans_to_token_spans(char_spans, offsets), len(tokens)) == labels


def test_overlapped_labels_label_every_token_a_span_touches() -> None:
    text, offsets = join_tokens(["breast", "cancer", "treated", "with", "tamoxifen"])
    assert text == "breast cancer treated with tamoxifen"
    spans = [Span(3, 13, "D"), Span(29, 31, "T")]  # "ast cancer" cuts a word; "mo" lies inside one
    assert overlapped_labels(spans, offsets) == ["D", "D", "O", "O", "T"]
    assert overlapped_labels([Span(13, 14, "D")], offsets) == ["O"] * 5  # the space between two words
