"""The review-loop simulation's other queue orders (benchmarks/review_loop.py): what each ranks first."""

import numpy as np
import pytest

from benchmarks.review_loop import QUEUE_ORDERS
from medner.inference import DecodedNote


def note(labels: list[str], confidence: list[float]) -> DecodedNote:
    return DecodedNote(labels, np.array(confidence), [])


def test_lowest_reads_every_word_tagged_or_not():
    lowest = QUEUE_ORDERS["lowest"]
    assert lowest(note(["D", "O"], [0.55, 0.99])) == pytest.approx(0.45)  # a doubtful entity counts
    assert lowest(note(["D", "O", "O"], [0.99, 0.70, 0.90])) == pytest.approx(0.30)
    assert lowest(note([], [])) == 0.0


def test_mnlp_is_normalised_by_length_and_sequence_is_not():
    short, long = note(["O"] * 2, [0.8, 0.8]), note(["O"] * 20, [0.9] * 20)
    mnlp, sequence = QUEUE_ORDERS["mnlp"], QUEUE_ORDERS["sequence"]
    assert (mnlp(short), mnlp(long)) == pytest.approx((0.2, 0.1))
    assert (sequence(short), sequence(long)) == pytest.approx((1 - 0.8 ** 2, 1 - 0.9 ** 20))
    assert sequence(long) > sequence(short)  # the long note first, where mnlp puts the short one first
