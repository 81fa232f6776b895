from medner.labels import BIO_TAGS, allowed_transition, from_bio, to_bio


def test_runs_become_one_entity_each() -> None:
    assert to_bio(["O", "D", "D", "T", "T", "O", "D"]) == ["O", "B-D", "I-D", "B-T", "I-T", "O", "B-D"]


def test_from_bio_merges_adjacent_entities_of_one_type() -> None:
    assert from_bio(["B-D", "B-D", "I-D", "O", "B-T"]) == ["D", "D", "D", "O", "T"]


def test_transitions() -> None:
    assert BIO_TAGS == ("O", "B-D", "I-D", "B-T", "I-T")
    assert allowed_transition(None, "B-D") and not allowed_transition(None, "I-D")
    assert allowed_transition("B-D", "I-D") and allowed_transition("I-D", "I-D")
    assert not allowed_transition("B-T", "I-D") and not allowed_transition("O", "I-T")
