import pytest

from medner.metrics import confusion_matrix, entity_scores, evaluate, relaxed_scores, token_weighted_f1

GOLD = [["D", "D", "O", "T"], ["O", "T", "T", "O", "D"]]
# sentence 1: D exact (TP), T missed, extra D predicted; sentence 2: T boundary wrong, D exact
PRED = [["D", "D", "D", "O"], ["O", "T", "O", "O", "D"]]


def test_entity_scores_by_hand() -> None:
    # gold: D[0,2) T[3,4) | T[1,3) D[4,5)  -> 4 entities (2 D, 2 T)
    # pred: D[0,3)        | T[1,2) D[4,5)  -> 3 entities; exact matches: D[4,5) only
    s = entity_scores(GOLD, PRED)
    assert s["entity_precision"] == pytest.approx(1 / 3)
    assert s["entity_recall"] == pytest.approx(1 / 4)
    assert s["entity_f1"] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4))
    assert (s["entity_precision_D"], s["entity_recall_D"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (s["entity_f1_T"], s["support_T"]) == (0.0, 2)


def test_relaxed_scores_count_overlaps_of_the_same_type() -> None:
    # overlap: pred D[0,3) hits gold D[0,2); pred T[1,2) hits gold T[1,3); D[4,5) exact
    s = relaxed_scores(GOLD, PRED)
    assert s["entity_precision_relaxed"] == pytest.approx(3 / 3)
    assert s["entity_recall_relaxed"] == pytest.approx(3 / 4)


def test_token_weighted_f1_by_hand() -> None:
    gold, pred = [["O", "O", "D", "T"]], [["O", "D", "D", "T"]]
    # O: p=1 r=.5 f=2/3 (support 2); D: p=.5 r=1 f=2/3 (1); T: f=1 (1)
    assert token_weighted_f1(gold, pred) == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)


def test_perfect_and_empty_predictions() -> None:
    assert evaluate(GOLD, GOLD)["entity_f1"] == 1.0
    nothing = [["O"] * len(g) for g in GOLD]
    assert evaluate(GOLD, nothing)["entity_f1"] == 0.0
    assert confusion_matrix(GOLD, nothing)["D"]["O"] == 3


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        evaluate(GOLD, [["O"]])
