"""The accuracy estimate without labels: the calibration's fit, the per-sentence columns, a window's sums read back
from whylogs profiles, and the served model's rows agreeing with its entities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medner.inference import DecodedNote, Entity
from monitoring.estimation import (
    ESTIMATE_COLUMNS,
    ESTIMATION_FILE,
    Estimator,
    fit_estimator,
    fit_missed_growth,
    scramble_words,
    sentence_estimates,
    window_estimate,
)
from monitoring.features import COLUMN, FEATURES, PROFILE_COLUMNS, FeatureTagger
from monitoring.profiles import profile_rows

ESTIMATOR = Estimator(exact_at=0.8, overlap_at=0.6, missed_per_mass=0.5)


def entity(start: int, end: int, label: str, score: float) -> Entity:
    return Entity(label=label, start=start, end=end, text="x" * (end - start), score=score)


def calibration_notes(n: int) -> tuple[list[DecodedNote], list[list[tuple[int, int, str]]]]:
    """Notes whose confident entities are right and whose unsure ones are wrong, and one gold entity each that no
    prediction touches (missed), with 0.4 of D/T mass on their O words."""
    decoded, gold = [], []
    for k in range(n):
        sure, unsure = entity(0, 5, "D", 0.95 - k * 0.001), entity(10, 15, "T", 0.55 + k * 0.001)
        # the unsure one overlaps a gold T but with other boundaries on even notes, nothing on odd ones
        truth = [(0, 5, "D"), (30, 40, "D")] + ([(10, 17, "T")] if k % 2 == 0 else [])
        decoded.append(DecodedNote(["D", "O", "T", "O", "O"], np.array([0.95, 0.8, 0.55, 0.9, 0.9]), [sure, unsure]))
        gold.append(truth)
    return decoded, gold


def test_fit_sets_thresholds_at_the_shares_right_and_counts_misses() -> None:
    """Half the entities are exactly right: ``exact_at`` is the 30th highest of 60 scores, the least sure of the
    sure ones; three quarters overlap a gold entity: ``overlap_at`` the 45th, the 15th of the unsure ones."""
    decoded, gold = calibration_notes(30)
    estimator = fit_estimator(decoded, gold, source="synthetic")
    assert (estimator.exact_at, estimator.overlap_at) == (pytest.approx(0.921), pytest.approx(0.565))
    exact, overlap = estimator.counted(np.array([0.95, estimator.exact_at, 0.9, estimator.overlap_at, 0.55]))
    assert exact.tolist() == [1, 1, 0, 0, 0] and overlap.tolist() == [1, 1, 1, 1, 0]
    # 30 missed gold D entities over 30 notes x (0.2 + 0.1 + 0.1) of D/T mass on the O words
    assert estimator.missed_per_mass == pytest.approx(30 / (30 * 0.4), rel=1e-4)
    assert estimator.calibration == {"source": "synthetic", "notes": 30, "entities": 60, "gold_entities": 75,
                                     "missed": 30}
    with pytest.raises(ValueError, match="need at least 20"):
        fit_estimator(*calibration_notes(5))


def test_on_its_calibration_notes_the_estimate_is_the_truth() -> None:
    """Thresholds at the shares keep counts: on the notes it was fitted on, the expected correct entities are the
    correct ones, and the expected gold entities are the gold ones when each gold entity has at most one prediction
    on it."""
    decoded, gold = calibration_notes(30)
    estimator = fit_estimator(decoded, gold)
    scores = np.array([e["score"] for note in decoded for e in note.entities])
    which = np.repeat(np.arange(len(decoded)), 2)
    mass = np.array([0.4] * len(decoded))
    columns = sentence_estimates(estimator, scores, which, mass)
    entities, correct, expected_gold = columns.sum(axis=0)
    assert (entities, correct) == (60, pytest.approx(30))
    assert expected_gold == pytest.approx(sum(map(len, gold)))


def test_entities_with_an_unknown_word_get_thresholds_of_their_own(tmp_path: Path) -> None:
    """At one score, entities whose words are all known are right and those with an unknown word are not: fitted
    apart, every known one counts and no unknown one; fitted together, one threshold counts both or neither (here:
    both, half of them being right); with too few unknown ones there is one fit."""
    decoded, gold = [], []
    for _ in range(40):
        known, unknown = entity(0, 5, "D", 0.9), entity(10, 15, "T", 0.9)
        decoded.append(DecodedNote(["D", "O", "T"], np.array([0.9, 0.99, 0.9]), [known, unknown]))
        gold.append([(0, 5, "D"), (10, 17, "T")])  # the unknown one overlaps its gold entity, with other bounds
    words = [(0, 5, False), (6, 9, False), (10, 15, True)]
    split = fit_estimator(decoded, gold, words=[words] * 40)
    exact, overlap = split.counted(np.array([0.9, 0.9]), np.array([False, True]))
    assert exact.tolist() == [1.0, 0.0] and overlap.tolist() == [1.0, 1.0]
    assert split.calibration["oov_entities"] == 40
    scores, unknown = np.array([0.9, 0.9]), np.array([False, True])
    columns = sentence_estimates(split, scores, np.array([0, 0]), np.array([0.0]), unknown)
    assert columns[0, 1] == pytest.approx(1.0)  # expected correct: the known entity only
    together = fit_estimator(decoded, gold)
    assert together.exact_at_oov is None and together.counted(np.array([0.9]))[0].tolist() == [1.0]
    few = fit_estimator(decoded, gold, words=[[*words[:2], (10, 15, k < 5)] for k in range(40)])
    assert few.exact_at_oov is None  # 5 unknown entities: not enough for a threshold of their own
    split.save(tmp_path)
    assert Estimator.load(tmp_path) == split


def test_missed_entities_with_an_unknown_word_get_a_rate_of_their_own() -> None:
    """Every note misses a gold entity on its unknown O word (0.4 of D/T mass there) and one in ten misses one on a
    known O word (0.2 there): apart, 2.5 misses per unit of unknown mass and 0.5 per unit of known mass. On the
    calibration's own mix both expect the same misses; a window whose O mass sits on unknown words expects more."""
    decoded, gold = [], []
    for k in range(40):
        decoded.append(DecodedNote(["D", "O", "O"], np.array([0.9, 0.8, 0.6]), [entity(0, 5, "D", 0.9)]))
        gold.append([(0, 5, "D"), (10, 15, "T"), *([(6, 9, "D")] if k % 10 == 0 else [])])
    words = [[(0, 5, False), (6, 9, False), (10, 15, True)]] * 40
    split, together = fit_estimator(decoded, gold, words=words), fit_estimator(decoded, gold)
    assert (split.missed_per_mass, split.missed_per_mass_oov) == (pytest.approx(0.5), pytest.approx(2.5))
    assert together.missed_per_mass_oov is None and together.missed_per_mass == pytest.approx(44 / 24, rel=1e-4)
    assert split.calibration["oov_missed"] == 40
    as_calibrated = [sentence_estimates(e, np.array([0.9]), np.array([0]), np.array([0.6]), np.array([False]),
                                        np.array([0.4]))[0, 2] for e in (split, together)]
    assert as_calibrated[0] == pytest.approx(as_calibrated[1], rel=1e-4)
    unknown_mass = [sentence_estimates(e, np.array([0.9]), np.array([0]), np.array([0.6]), np.array([False]),
                                       np.array([0.6]))[0, 2] for e in (split, together)]
    assert unknown_mass[0] == pytest.approx(1.0 + 2.5 * 0.6) and unknown_mass[1] == pytest.approx(1.0 + 1.1)
    fewer = [g if k < 10 else g[:1] for k, g in enumerate(gold)]  # 10 + 1 misses: too few to split
    assert fit_estimator(decoded, fewer, words=words).missed_per_mass_oov is None


def test_the_missed_rate_on_unknown_words_grows_with_a_sentence_s_unknown_share_above_the_calibration_s() -> None:
    grows = Estimator(exact_at=0.8, overlap_at=0.6, missed_per_mass=0.5, missed_per_mass_oov=2.0, missed_growth=4.0,
                      unknown_share=0.25)
    mass, mass_oov, share = np.array([0.6, 0.6, 0.6]), np.array([0.4, 0.4, 0.4]), np.array([0.1, 0.25, 0.5])
    missed = sentence_estimates(grows, np.array([]), np.array([], dtype=int), mass, np.array([], dtype=bool),
                                mass_oov, share)[:, 2]
    # known: 0.5 x 0.2; unknown: 2.0 x 0.4, x (1 + 4 x 0.25) for the sentence half of whose words are unknown
    assert missed == pytest.approx([0.1 + 0.8, 0.1 + 0.8, 0.1 + 0.8 * 2.0])
    unshared = sentence_estimates(grows, np.array([]), np.array([], dtype=int), mass, np.array([], dtype=bool),
                                  mass_oov)[:, 2]
    assert unshared == pytest.approx([0.9, 0.9, 0.9])  # no shares given (no vocabulary): no growth


def growth_set(unknown_words: tuple[bool, bool, bool, bool], missed_every: int, notes: int = 10) -> tuple:
    """Notes of four words, an entity on the first (right, 0.9), 0.5 of D/T mass on the third (unknown), and a gold
    entity there that the model missed on one note in ``missed_every``."""
    spans = [(0, 5), (6, 9), (10, 15), (16, 20)]
    decoded, gold, words = [], [], []
    for k in range(notes):
        decoded.append(DecodedNote(["D", "O", "O", "O"], np.array([0.9, 1.0, 0.5, 1.0]), [entity(0, 5, "D", 0.9)]))
        gold.append([(0, 5, "D"), *([(10, 15, "T")] if k % missed_every == 0 else [])])
        words.append([(*span, unknown) for span, unknown in zip(spans, unknown_words)])
    return decoded, gold, words


def test_the_growth_is_fitted_where_the_estimate_meets_the_truth_on_unfamiliar_copies() -> None:
    """The calibration notes (a quarter of their words unknown) miss one entity per unit of unknown O mass, as the
    estimator says; their unfamiliar copies (three quarters unknown) miss twice as many, which a growth of 2 over
    the half of excess share gives: estimated F1 20/30, as true."""
    estimator = Estimator(exact_at=0.5, overlap_at=0.5, missed_per_mass=0.0, missed_per_mass_oov=1.0)
    calibration = growth_set((False, False, True, False), missed_every=2)
    unfamiliar = growth_set((False, True, True, True), missed_every=1)
    fitted = fit_missed_growth(estimator, [calibration, unfamiliar])
    assert (fitted.missed_growth, fitted.unknown_share) == (2.0, 0.25)
    assert fitted.calibration["f1_true"] == fitted.calibration["f1_estimated"] == [0.8, pytest.approx(0.6667)]
    assert fit_missed_growth(estimator, [calibration, calibration]).missed_growth == 0.0  # nothing to grow for


def test_scrambled_words_keep_their_ends_length_and_labels() -> None:
    import random

    from medner.data import Sentence

    sentence = Sentence(("Chronic", "asthma", "in", "a", "child", "given", "salbutamol", "."),
                        ("B-D", "I-D", "O", "O", "O", "O", "B-T", "O"))
    scrambled = scramble_words(sentence, 1.0, random.Random(3))
    assert scrambled.labels == sentence.labels and scrambled.tokens[2:4] == ("in", "a")
    assert scrambled.tokens != sentence.tokens
    for new, old in zip(scrambled.tokens, sentence.tokens):
        assert (new[0], new[-1], sorted(new)) == (old[0], old[-1], sorted(old))
    assert scramble_words(sentence, 0.0, random.Random(3)) == sentence


def test_sentence_estimates_by_sentence() -> None:
    columns = sentence_estimates(ESTIMATOR, np.array([0.9, 0.5, 0.7]), np.array([0, 0, 2]), np.array([0.2, 1.0, 0.0]))
    assert columns.shape == (3, len(ESTIMATE_COLUMNS))
    # 0.9 counts as right, 0.7 overlaps only, 0.5 neither; the missed: 0.5 per unit of O mass
    np.testing.assert_allclose(columns, [[2, 1, 1 + 0.1], [0, 0, 0.5], [1, 0, 1]])


def test_window_estimate_sums_merged_profiles() -> None:
    from datetime import UTC, datetime

    rng = np.random.default_rng(0)
    parts = []
    for n in (40, 70):
        rows = np.full((n, len(PROFILE_COLUMNS)), np.nan)
        rows[:, : len(FEATURES)] = rng.random((n, len(FEATURES)))
        rows[:, COLUMN["entities"]] = rng.integers(0, 4, n)
        rows[:, COLUMN["expected_correct"]] = rows[:, COLUMN["entities"]] * rng.random(n)
        rows[:, COLUMN["expected_gold"]] = rows[:, COLUMN["entities"]] * rng.random(n) + rng.random(n)
        parts.append(rows)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    merged = profile_rows(parts[0], when).merge(profile_rows(parts[1], when))
    entities, correct, gold = np.concatenate(parts)[:, COLUMN["entities"]:].sum(axis=0)
    estimate = window_estimate(merged)
    assert estimate["entity_f1"] == pytest.approx(2 * correct / (entities + gold), abs=1e-4)
    assert (estimate["precision"], estimate["recall"]) == (pytest.approx(correct / entities, abs=1e-4),
                                                           pytest.approx(correct / gold, abs=1e-4))
    assert estimate["entities"] == round(entities) and estimate["support"] == round((entities + gold) / 2)
    assert window_estimate(profile_rows(parts[0][:, :COLUMN["entities"]], when)) is None  # exported before it
    assert window_estimate(None) is None


def test_estimator_round_trip(tmp_path: Path) -> None:
    assert Estimator.load(tmp_path) is None
    ESTIMATOR.save(tmp_path)
    assert (tmp_path / ESTIMATION_FILE).exists() and Estimator.load(tmp_path) == ESTIMATOR


def test_an_estimator_of_an_earlier_medner_is_not_read(tmp_path: Path) -> None:
    """Versions exported with score curves (before thresholds) are served without an estimate, with a warning
    that says how to get one."""
    (tmp_path / ESTIMATION_FILE).write_text('{"knots": [0.5, 0.9], "exact": [0.2, 0.8], "overlap": [0.6, 1.0], '
                                            '"missed_per_mass": 0.5}', encoding="utf-8")
    with pytest.warns(UserWarning, match="re-export"):
        assert Estimator.load(tmp_path) is None


def test_served_rows_count_the_entities_it_returns(exported_repository: Path) -> None:
    """The estimate columns of a served model agree with the entities it answers: one row per sentence (each note
    here is one sentence), each entity scored as the client sees it."""
    from clients.local import LocalNerModel
    from tests import notes as samples

    pipeline = LocalNerModel(exported_repository, "ner", threads=1).pipeline
    tagger = FeatureTagger(pipeline)
    assert tagger.features.estimator is not None  # export calibrated it on held-out sentences
    notes = [*samples.SENTENCES, "Follow-up for chronic kidney disease and hepatitis C", ""]
    decoded, rows = tagger(notes)
    entities = [d.entities for d in decoded]
    assert len(rows) == len(notes)
    assert rows[:, COLUMN["entities"]].tolist() == [len(e) for e in entities] and any(entities)
    estimator = tagger.features.estimator
    for row, found in zip(rows, entities):
        scores = np.array([e["score"] for e in found])
        exact, overlap = estimator.counted(scores)
        # clients see scores rounded to 4 places: an entity that close to a threshold may fall on either side
        near = sum(np.sum(np.abs(scores - at) <= 5e-5) for at in (estimator.exact_at, estimator.overlap_at))
        assert row[COLUMN["expected_correct"]] == pytest.approx(exact.sum(), abs=near + 1e-9)
        assert row[COLUMN["expected_gold"]] >= overlap.sum() - near - 1e-9  # plus the misses expected on O words
    assert rows[-1, COLUMN["entities"]:].tolist() == [0.0, 0.0, 0.0]  # the empty note: nothing to find
