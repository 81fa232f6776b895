import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medner.decoding import decode, viterbi
from medner.labels import BIO_TAGS, allowed_transition


def brute_force(log_probs: np.ndarray) -> float:
    best = -np.inf
    for path in itertools.product(range(len(BIO_TAGS)), repeat=len(log_probs)):
        tags = [BIO_TAGS[i] for i in path]
        if all(allowed_transition(p, c) for p, c in zip([None, *tags], tags)):
            best = max(best, sum(log_probs[i, t] for i, t in enumerate(path)))
    return best


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
