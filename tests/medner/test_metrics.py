import pytest

from medner.metrics import (
    confusion_matrix,
    entity_scores,
    error_breakdown,
    evaluate,
    relaxed_scores,
    token_weighted_f1,
)

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


def test_error_breakdown_puts_each_entity_in_one_category() -> None:
    tokens = [["a", "b", "c", "d", "e", "f", "g", "h"], ["x", "y", "z"]]
    gold = [list("DDOTTODD"), list("OOO")]
    pred = [list("DOOTTOTO"), list("OTO")]
    # sentence 1: [a b]D predicted [a]D: boundary; [d e]T exact; [g h]D predicted [g]T: boundary and type.
    # sentence 2: no gold entity, [y]T predicted: spurious in an empty sentence.
    breakdown = error_breakdown(gold, pred, tokens)
    assert breakdown["counts"] == {
        "D": {"exact": 0, "boundary": 1, "wrong_type": 0, "boundary_and_type": 1, "missed": 0, "spurious": 0},
        "T": {"exact": 1, "boundary": 0, "wrong_type": 0, "boundary_and_type": 0, "missed": 0, "spurious": 1},
    }
    assert breakdown["spurious_in_empty_sentences"] == {"D": 0, "T": 1}
    assert breakdown["examples"]["boundary"] == [{"gold": "[a b]D; [d e]T; [g h]D", "predicted": "[a]D; [d e]T; [g]T"}]
    assert breakdown["examples"]["spurious"] == [{"gold": "-", "predicted": "[y]T"}]

    swapped = error_breakdown([list("DDOTO")], [list("TTOOO")])["counts"]
    assert swapped["D"]["wrong_type"] == 1 and swapped["T"]["missed"] == 1


def test_evaluate_carries_the_error_counts() -> None:
    metrics = evaluate([list("DDOTTODD"), list("OOO")], [list("DOOTTOTO"), list("OTO")])
    assert metrics["errors_exact_T"] == 1 and metrics["errors_boundary_D"] == 1
    assert metrics["errors_spurious_in_empty_T"] == 1 and metrics["errors_missed_D"] == 0
    gold_entities = metrics["support_D"] + metrics["support_T"]
    gold_categories = ("exact", "boundary", "wrong_type", "boundary_and_type", "missed")
    assert sum(metrics[f"errors_{c}_{t}"] for c in gold_categories for t in "DT") == gold_entities
