"""The review-loop simulation's other queue orders (benchmarks/review_loop.py): what each ranks first."""

import numpy as np
import pytest

from benchmarks.review_loop import QUEUE_ORDERS, STORES, arm_description, text_similarity
from medner.inference import DecodedNote


def note(labels: list[str], confidence: list[float]) -> DecodedNote:
    return DecodedNote(labels, np.array(confidence), [])


def uncertainty(order: str, *notes: DecodedNote) -> list[float]:
    return QUEUE_ORDERS[order](notes, ["a note"] * len(notes)).tolist()


def test_lowest_reads_every_word_tagged_or_not():
    assert uncertainty("lowest", note(["D", "O"], [0.55, 0.99]), note(["D", "O", "O"], [0.99, 0.70, 0.90]),
                       note([], [])) == pytest.approx([0.45, 0.30, 0.0])  # a doubtful entity counts


def test_mnlp_is_normalised_by_length_and_sequence_is_not():
    short, long = note(["O"] * 2, [0.8, 0.8]), note(["O"] * 20, [0.9] * 20)
    assert uncertainty("mnlp", short, long) == pytest.approx([0.2, 0.1])
    assert uncertainty("sequence", short, long) == pytest.approx([1 - 0.8 ** 2, 1 - 0.9 ** 20])
    # the long note first, where mnlp puts the short one first


def test_msum_counts_every_likely_miss_and_isolated_skips_an_entity_s_edges():
    one, two = note(["O", "O", "O"], [0.6, 0.99, 0.99]), note(["O", "O", "O"], [0.7, 0.99, 0.7])
    assert uncertainty("msum", one, two) == pytest.approx([0.42 / 1.42, 0.61 / 1.61])  # two misses before one
    edge = note(["D", "O", "D", "O", "O", "O"], [0.99, 0.4, 0.99, 0.99, 0.9, 0.99])  # "asthma and copd in a boy"
    assert uncertainty("isolated", edge) == pytest.approx([0.1])  # the "and" (0.6) is an edge, "a" is not
    assert uncertainty("isolated", note(["T"], [0.5])) == [0.0]


def test_dense_ranks_a_typical_note_before_an_outlier_with_the_same_doubt():
    texts = ["fever and cough treated with aspirin", "cough and fever treated with rest",
             "fever with cough", "zygomatic quux frobnicated"]
    density = text_similarity(texts).mean(axis=1)
    assert density.argmin() == 3 and density[3] == 0.0  # no word in common with the pool
    doubt = [note(["O"], [0.6])] * 4
    scores = QUEUE_ORDERS["dense"](doubt, texts)
    assert scores.max() == pytest.approx(0.4) and scores[3] == 0.0 and scores[0] > scores[2]


def test_novel_puts_a_different_note_before_a_near_copy_of_one_already_queued():
    texts = ["fever and cough treated with aspirin", "fever and cough treated with aspirin today",
             "asthma treated with an inhaler", "asthma and fever", "zygomatic quux frobnicated"]
    doubt = [note(["O"], [0.5]), note(["O"], [0.5]), note(["O"], [0.6]), note(["O"], [0.9]), note(["O"], [0.5])]
    dense = QUEUE_ORDERS["dense"](doubt, texts)
    novel = QUEUE_ORDERS["novel"](doubt, texts)
    assert np.argsort(-dense).tolist()[:2] == [0, 1]  # dense: the near copy second
    assert np.argsort(-novel).tolist()[:3] == [0, 2, 1]  # novel: the asthma note before the near copy
    assert sorted(novel.tolist()) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # a rank: every note once


def test_the_report_describes_every_arm_by_its_own_order():
    described = {arm: arm_description(arm) for arm in STORES}  # a store added without a description fails here
    assert len(set(described.values())) == len(STORES)
    assert "20% of the notes random" in described["half+default"]
    assert described["half+queue-novel"].startswith("`queue-novel`, least certain first by the dense order picked")
