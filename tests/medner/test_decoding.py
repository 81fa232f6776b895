import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medner.decoding import SPAN_EDGES_FILE, SPAN_EDGES_MIN_COUNT, SpanEdges, decode, marginals, viterbi
from medner.labels import BIO_TAGS, allowed_transition


def brute_force(log_probs: np.ndarray) -> float:
    best = -np.inf
    for path in itertools.product(range(len(BIO_TAGS)), repeat=len(log_probs)):
        tags = [BIO_TAGS[i] for i in path]
        if all(allowed_transition(p, c) for p, c in zip([None, *tags], tags)):
            best = max(best, sum(log_probs[i, t] for i, t in enumerate(path)))
    return best


def enumerated_marginals(log_probs: np.ndarray, start: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """Each word's tag chances by enumerating every IOB2-valid path, weighted by exp(its emissions + learned
    start/transitions)."""
    expected = np.zeros_like(log_probs)
    if not len(log_probs):
        return expected
    for path in itertools.product(range(len(BIO_TAGS)), repeat=len(log_probs)):
        tags = [BIO_TAGS[i] for i in path]
        if all(allowed_transition(p, c) for p, c in zip([None, *tags], tags)):
            weight = np.exp(sum(log_probs[i, t] for i, t in enumerate(path)) + start[path[0]]
                            + sum(transitions[a, b] for a, b in zip(path, path[1:])))
            expected[np.arange(len(path)), path] += weight
    return expected / expected[0].sum()


@settings(max_examples=40, deadline=None)
@given(st.lists(arrays(np.float64, st.tuples(st.integers(0, 4), st.just(len(BIO_TAGS))),
                       elements=st.floats(-10, 0, allow_nan=False)), min_size=1, max_size=3),
       arrays(np.float64, st.just((len(BIO_TAGS) + 1, len(BIO_TAGS))), elements=st.floats(-3, 3, allow_nan=False)))
def test_marginals_are_each_word_s_tag_chances_over_the_valid_paths(sentences: list[np.ndarray],
                                                                      scores: np.ndarray) -> None:
    """Against enumerating every path of each sentence, sentences of different lengths computed together."""
    start, transitions = scores[0], scores[1:]
    together = marginals(sentences, (start, transitions))
    assert [m.shape for m in together] == [s.shape for s in sentences]
    for sentence, computed in zip(sentences, together):
        np.testing.assert_allclose(np.exp(computed), enumerated_marginals(sentence, start, transitions), atol=1e-9)
    inside = [i for i, t in enumerate(BIO_TAGS) if t.startswith("I-")]
    assert all(np.exp(m)[0, inside].max() == 0 for m in marginals(sentences) if len(m))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.just(len(BIO_TAGS))),
              elements=st.floats(-10, 0, allow_nan=False)))
def test_viterbi_finds_the_best_valid_path(log_probs: np.ndarray) -> None:
    path = viterbi(log_probs)
    tags = [BIO_TAGS[i] for i in path]
    assert all(allowed_transition(p, c) for p, c in zip([None, *tags], tags))
    assert sum(log_probs[i, t] for i, t in enumerate(path)) == pytest.approx(brute_force(log_probs))


def test_viterbi_repairs_an_orphan_inside_tag_where_argmax_does_not() -> None:
    # columns: O, B-D, I-D, B-T, I-T. Word 1 leans to I-T, which cannot follow O; word 2 is clearly I-D.
    # argmax reads O, I-T, I-D: a one-word treatment then a disease. The best valid path is O, B-D, I-D.
    lp = np.log(np.array([
        [0.90, 0.04, 0.02, 0.02, 0.02],
        [0.03, 0.40, 0.02, 0.05, 0.50],
        [0.05, 0.05, 0.80, 0.05, 0.05],
    ]))
    assert [BIO_TAGS[i] for i in lp.argmax(axis=1)] == ["O", "I-T", "I-D"]
    assert [BIO_TAGS[i] for i in viterbi(lp)] == ["O", "B-D", "I-D"]
    assert decode(lp, "argmax") == ["O", "T", "D"]
    assert decode(lp) == ["O", "D", "D"]


def test_decode_rejects_unknown_method_and_handles_empty() -> None:
    assert decode(np.zeros((0, len(BIO_TAGS)))) == []
    with pytest.raises(ValueError, match="unknown decoding"):
        decode(np.zeros((1, len(BIO_TAGS))), "beam")


def entity_edges_kept(tags: list[str], no_start: np.ndarray, no_end: np.ndarray) -> bool:
    for i, tag in enumerate(tags):
        if tag.startswith("B-") and no_start[i]:
            return False
        following = tags[i + 1] if i + 1 < len(tags) else "O"
        if tag != "O" and following != f"I-{tag[2:]}" and no_end[i]:
            return False
    return True


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.just(len(BIO_TAGS))),
              elements=st.floats(-10, 0, allow_nan=False)),
       st.lists(st.booleans(), min_size=10, max_size=10))
def test_viterbi_with_span_edges_finds_the_best_path_that_keeps_them(log_probs: np.ndarray, flags: list[bool]) -> None:
    n = len(log_probs)
    no_start, no_end = np.array(flags[:n]), np.array(flags[5:5 + n])
    path = viterbi(log_probs, no_start, no_end)
    tags = [BIO_TAGS[i] for i in path]
    assert entity_edges_kept(tags, no_start, no_end)
    best = max(sum(log_probs[i, t] for i, t in enumerate(p))
               for p in itertools.product(range(len(BIO_TAGS)), repeat=n)
               if all(allowed_transition(a, b) for a, b in zip([None, *[BIO_TAGS[i] for i in p]],
                                                             [BIO_TAGS[i] for i in p]))
               and entity_edges_kept([BIO_TAGS[i] for i in p], no_start, no_end))
    assert sum(log_probs[i, t] for i, t in enumerate(path)) == pytest.approx(best)


def test_span_edges_learned_from_train_keep_a_conjunction_out_of_an_entity_end(tmp_path) -> None:
    train = [(["asthma", "and", "rest", "helped"], ["D", "O", "T", "O"])] * SPAN_EDGES_MIN_COUNT
    edges = SpanEdges.learn(train)
    assert edges.never_first == edges.never_last == {"and", "helped"}  # seen often, never an entity's edge
    assert SpanEdges.learn(train[1:]) == SpanEdges()  # seen too rarely to rule out
    # columns: O, B-D, I-D, B-T, I-T. Alone, the model reads "asthma and" as one disease.
    lp = np.log(np.array([
        [0.05, 0.90, 0.02, 0.02, 0.01],
        [0.40, 0.02, 0.55, 0.02, 0.01],
        [0.90, 0.02, 0.04, 0.02, 0.02],
    ]))
    words = ["Asthma", "and", "rest"]
    assert decode(lp) == ["D", "D", "O"]
    assert decode(lp, words=words, edges=edges) == ["D", "O", "O"]
    assert decode(lp, "argmax", words, edges) == ["D", "D", "O"]  # edges belong to the Viterbi decoder

    (tmp_path / SPAN_EDGES_FILE).write_text(edges.to_json())
    assert SpanEdges.load(tmp_path) == edges
    assert SpanEdges.load(tmp_path / "elsewhere") is None


def test_span_edges_apply_within_each_sentence() -> None:
    edges = SpanEdges(never_last=frozenset({"therapy"}))
    # "asthma therapy . Rest helped": alone, word 1 would end a disease on a ruled-out word; across the sentence
    # break the cheapest repair would be to run the entity on into the next sentence.
    lp = np.log(np.array([
        [0.02, 0.94, 0.02, 0.01, 0.01],
        [0.10, 0.02, 0.85, 0.02, 0.01],
        [0.30, 0.02, 0.65, 0.02, 0.01],
        [0.90, 0.05, 0.01, 0.02, 0.02],
    ]))
    words = ["asthma", "therapy", "Rest", "helped"]
    assert decode(lp, words=words, edges=edges) == ["D", "D", "D", "O"]  # one sentence: it runs on
    assert decode(lp, words=words, edges=edges, sentences=[(0, 2), (2, 4)]) == ["D", "O", "O", "O"]
