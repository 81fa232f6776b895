"""Monitoring features, one row per sentence: exact values on hand-made notes, the packaging invariant (the
same sentences as one note or as many give the same rows), and what export publishes."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medner.data import read_behealthy
from medner.inference import tokenize_notes
from medner.spans import split_sentences, split_words
from monitoring.features import (
    FEATURES,
    LOW_CONFIDENCE,
    NOTE_SENTENCES,
    PROFILE_COLUMNS,
    FeatureTagger,
    batch_features,
    profile_columns,
)
from monitoring.vocabulary import (
    VOCABULARY_MIN_SENTENCES,
    Vocabulary,
    read_vocabulary,
    vocabulary_key,
    write_vocabulary,
)

NOTE_COLUMN = PROFILE_COLUMNS.index(NOTE_SENTENCES)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from medner.config import default_base_model

    return AutoTokenizer.from_pretrained(default_base_model())


def features_of(tokenizer, notes, labels, confidences, vocabulary, max_length=128):
    batch = tokenize_notes(tokenizer, notes, max_length=max_length, stride=4)
    rows = batch_features(notes, batch, labels, [np.asarray(c) for c in confidences], tokenizer.unk_token_id,
                          None if vocabulary is None else Vocabulary(vocabulary))
    return batch, rows


def as_dicts(rows: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(PROFILE_COLUMNS, row)) for row in rows]


def test_features_of_a_known_sentence(tokenizer) -> None:
    assert FEATURES == ("chars", "wordpieces", "windows", "unknown_wordpiece_rate", "oov_word_rate",
                        "disease_per_100_words", "treatment_per_100_words", "confidence_mean", "confidence_min",
                        "low_confidence_rate", "entity_oov_rate", "misspelling_rate", "treatment_oov_rate")
    assert PROFILE_COLUMNS == (*FEATURES, NOTE_SENTENCES, "entities", "expected_correct", "expected_gold")
    note = "Asthma 🙂 treated with Metformin and beta blockers ."  # 🙂 is [UNK]; metformin is 3 pieces
    labels = ["D", "O", "O", "O", "T", "O", "T", "T", "O"]
    confidence = [0.95, 0.5, 0.99, 0.8, 0.97, 1.0, 0.91, 0.89, 1.0]
    _, rows = features_of(tokenizer, [note], [labels], [confidence], {"asthma", "treated", "with", "and", "."})
    [row] = as_dicts(rows)
    assert row["chars"] == len(note)
    assert row["wordpieces"] == 12 and row["windows"] == 1  # 9 words, metformin 3 pieces, blockers 2
    assert row["unknown_wordpiece_rate"] == pytest.approx(1 / 12)
    assert row["oov_word_rate"] == pytest.approx(4 / 9)  # 🙂, metformin (lower-cased), beta, blockers
    assert row["disease_per_100_words"] == pytest.approx(100 / 9)
    assert row["treatment_per_100_words"] == pytest.approx(200 / 9)  # two runs of T: two treatments
    assert row["confidence_mean"] == pytest.approx(np.mean(confidence))
    assert row["confidence_min"] == pytest.approx(0.5)
    assert row["low_confidence_rate"] == pytest.approx(sum(c < LOW_CONFIDENCE for c in confidence) / 9)
    assert row["entity_oov_rate"] == pytest.approx(3 / 4)  # of asthma, metformin, beta, blockers: all but asthma
    assert row["misspelling_rate"] == 0  # unseen words, none one edit from a seen one
    assert row["treatment_oov_rate"] == 1  # metformin, beta, blockers: the seen disease word left out
    assert row[NOTE_SENTENCES] == 1
    typed = "Astma traeted with metformin ."  # a letter dropped, two swapped
    _, rows = features_of(tokenizer, [typed], [["D", "O", "O", "T", "O"]], [[0.9] * 5],
                          {"asthma", "treated", "with", "and", "."})
    assert as_dicts(rows)[0]["misspelling_rate"] == pytest.approx(2 / 5)
    assert as_dicts(rows)[0]["oov_word_rate"] == pytest.approx(3 / 5)
    _, unknown = features_of(tokenizer, [note], [labels], [confidence], None)  # no vocabulary: no OOV rates
    assert all(np.isnan(as_dicts(unknown)[0][name])
               for name in ("oov_word_rate", "entity_oov_rate", "misspelling_rate", "treatment_oov_rate"))


def test_one_row_per_sentence_with_its_own_numbers(tokenizer) -> None:
    # three sentences: a break after "." before a capital, and a line break; the last has no end mark
    note = "Asthma was treated.  Fever and flu treated with aspirin !\nno disease"
    words = split_words(note)
    assert split_sentences(note, words) == [(0, 4), (4, 11), (11, 13)]
    labels = ["D", "O", "O", "O", "D", "O", "D", "O", "O", "T", "O", "O", "D"]
    confidence = [0.5, 1.0, 1.0, 1.0, 0.8, 0.95, 0.7, 1.0, 1.0, 0.6, 1.0, 0.99, 0.3]
    _, rows = features_of(tokenizer, [note], [labels], [confidence],
                          {"asthma", "was", "treated", ".", "no", "aspirin"})
    first, second, third = as_dicts(rows)
    assert [r["chars"] for r in (first, second, third)] == [19, 36, 10]  # each sentence's own extent
    pieces = [len(tokenizer([note[s:e] for s, e in words[f:t]], is_split_into_words=True,
                            add_special_tokens=False)["input_ids"]) for f, t in split_sentences(note, words)]
    assert [r["wordpieces"] for r in (first, second, third)] == pieces and pieces[1] > 7  # aspirin: 3 pieces
    assert all(r["windows"] == 1 for r in (first, second, third))  # one window per sentence, as encoded
    assert first["oov_word_rate"] == 0 and second["oov_word_rate"] == pytest.approx(5 / 7)
    assert second["entity_oov_rate"] == pytest.approx(2 / 3)  # fever, flu unseen; aspirin seen
    assert second["treatment_oov_rate"] == 0  # aspirin, the one treatment word, seen
    assert math.isnan(first["treatment_oov_rate"]) and math.isnan(third["treatment_oov_rate"])  # no T word
    assert third["oov_word_rate"] == pytest.approx(1 / 2)
    assert first["disease_per_100_words"] == pytest.approx(100 / 4)
    assert second["disease_per_100_words"] == pytest.approx(200 / 7)  # fever, flu: two runs
    assert second["treatment_per_100_words"] == pytest.approx(100 / 7)
    assert third["disease_per_100_words"] == pytest.approx(100 / 2)
    assert first["confidence_min"] == 0.5 and second["confidence_min"] == 0.6 and third["confidence_min"] == 0.3
    assert second["confidence_mean"] == pytest.approx(np.mean(confidence[4:11]))
    assert second["low_confidence_rate"] == pytest.approx(3 / 7)
    assert first[NOTE_SENTENCES] == 3 and math.isnan(second[NOTE_SENTENCES]) and math.isnan(third[NOTE_SENTENCES])


def test_a_run_across_a_sentence_break_is_an_entity_in_each(tokenizer) -> None:
    note = "Pain .\nPain"
    _, rows = features_of(tokenizer, [note], [["D", "D", "D"]], [[1.0, 1.0, 1.0]], None)
    assert list(rows[:, FEATURES.index("disease_per_100_words")]) == pytest.approx([50.0, 100.0])


SENTENCES = [
    "Asthma was treated with inhaled steroids.",
    "Type 2 diabetes 🙂 was managed with metformin; hypertension with beta blockers.",
    "No evidence of migraine after surgery!",
    "fever " * 40 + "persisted.",  # longer than a 16-piece window: several windows
    "Ωmega-3 für Diabetes — ok?",
]


def synthetic_decoding(sentences: list[str], seed: int) -> tuple[list[list[str]], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    words = [len(split_words(s)) for s in sentences]
    return ([list(rng.choice(["O", "D", "T"], n)) for n in words], [rng.random(n) for n in words])


@pytest.mark.parametrize("separator", [" ", "\n", "\n\n  "])
def test_same_rows_however_sentences_are_grouped_into_notes(tokenizer, separator: str) -> None:
    labels, confidences = synthetic_decoding(SENTENCES, seed=3)
    vocabulary = {"asthma", "was", "with", "fever", "."}
    _, alone = features_of(tokenizer, SENTENCES, labels, confidences, vocabulary, max_length=16)
    joined = [separator.join(SENTENCES[:3]), separator.join(SENTENCES[3:])]
    _, grouped = features_of(tokenizer, joined, [sum(labels[:3], []), sum(labels[3:], [])],
                             [np.concatenate(confidences[:3]), np.concatenate(confidences[3:])], vocabulary,
                             max_length=16)
    assert alone.shape == grouped.shape == (len(SENTENCES), len(PROFILE_COLUMNS))
    np.testing.assert_allclose(grouped[:, : len(FEATURES)], alone[:, : len(FEATURES)], rtol=0, atol=1e-12)
    assert alone[3, FEATURES.index("windows")] > 1
    # only the packaging column tells the two apart: 5 notes of one sentence, or notes of 3 and 2
    assert list(alone[:, NOTE_COLUMN]) == [1] * 5
    assert np.array_equal(grouped[:, NOTE_COLUMN], [3, np.nan, np.nan, 2, np.nan], equal_nan=True)


def test_windows_of_long_sentences_and_missing_vocabulary(tokenizer) -> None:
    long = " ".join(["fever"] * 40)
    note = f"{long}.\n{long}"
    batch, rows = features_of(tokenizer, [note], [["D", "D", "O"] * 27], [[1.0] * 81], None, max_length=16)
    first, second = as_dicts(rows)
    assert first["windows"] + second["windows"] == batch.notes[0].n_windows and first["windows"] > 1
    real = batch.attention_mask.sum(axis=1) - 2  # pieces the encoder read, overlaps once per window
    assert first["wordpieces"] == real[: int(first["windows"])].sum() > 41
    assert first["unknown_wordpiece_rate"] == 0.0
    assert math.isnan(first["oov_word_rate"])  # no vocabulary published: unknown, not 0
    assert first["disease_per_100_words"] == pytest.approx(100 * 14 / 41)


def test_a_note_without_words_is_one_row_and_no_notes_no_rows(tokenizer) -> None:
    _, rows = features_of(tokenizer, ["   "], [[]], [[]], {"x"})
    [row] = as_dicts(rows)
    assert row["chars"] == 3 and row[NOTE_SENTENCES] == 1
    assert all(math.isnan(row[name]) for name in FEATURES[3:])
    assert batch_features([], tokenize_notes(tokenizer, []), [], [], 0, None).shape == (0, len(PROFILE_COLUMNS))


def test_profile_columns() -> None:
    assert profile_columns(np.zeros((2, len(PROFILE_COLUMNS)))) == PROFILE_COLUMNS
    assert profile_columns(np.zeros((2, len(FEATURES)))) == FEATURES  # rows without the note column
    assert profile_columns(np.zeros((2, len(FEATURES) + 1))) == (*FEATURES, NOTE_SENTENCES)  # nor the estimate
    with pytest.raises(ValueError, match="columns"):
        profile_columns(np.zeros((2, 3)))


def test_the_vocabulary_holds_words_of_enough_sentences_with_digits_masked(tmp_path: Path) -> None:
    sentences = [["Asthma", "asthma", "treated", "."], ["asthma", "MRN", "4711", "."], ["Tamoxifen", "9", "."],
                 ["asthma", "2", "."], ["ASTHMA", "3", " ", "."], ["asthma", "Zqxmarker7731", "."]]
    write_vocabulary(sentences, tmp_path, min_sentences=5)
    assert (tmp_path / "train_vocabulary.txt").read_text() == ".\nasthma\n"  # in 5 of the 6 sentences
    write_vocabulary(sentences, tmp_path, min_sentences=3)  # the digits: 9, 2 and 3 are one shape, 0
    assert read_vocabulary(tmp_path) == {".", "asthma", "0"}
    assert vocabulary_key("MRN-4711") == "mrn-0000" and vocabulary_key("Asthma") == "asthma"
    assert read_vocabulary(tmp_path / "missing") is None


@pytest.mark.slow
def test_export_publishes_vocabulary_and_reference_profile(exported_repository: Path, tiny_corpus: Path) -> None:
    from clients.local import LocalNerModel
    from medner.spans import join_tokens
    from monitoring.drift import note_count, sentence_count
    from monitoring.profile_store import read_profile

    splits = read_behealthy(tiny_corpus)
    seen = Counter(key for s in splits["train"] for key in {vocabulary_key(w) for w in s.tokens})
    expected = {key for key, n in seen.items() if n >= VOCABULARY_MIN_SENTENCES}
    for model in ("ner", "ner_int8"):
        version = exported_repository / model / "1"
        assert read_vocabulary(version) == expected
        view = read_profile(version / "reference_profile.bin")
        assert set(view.get_columns()) == set(PROFILE_COLUMNS)
        notes = [join_tokens(s.tokens)[0] for s in splits["test"]]
        assert note_count(view) == len(splits["test"])  # each test sentence sent as a note
        # the reference is what the served model profiles for those notes: same rows, same distribution
        _, rows = FeatureTagger(LocalNerModel(exported_repository, model, threads=1).pipeline)(notes)
        assert sentence_count(view) == len(rows)
        for column in ("chars", "confidence_mean"):
            summary = view.get_column(column).to_summary_dict()
            assert summary["distribution/mean"] == pytest.approx(rows[:, PROFILE_COLUMNS.index(column)].mean())
        oov = view.get_column("oov_word_rate").to_summary_dict()
        assert oov["counts/nan"] == 0 and oov["distribution/max"] == 0  # the tiny corpus' test words are in train


def test_pipeline_features_match_its_entities(exported_repository: Path) -> None:
    from clients.local import LocalNerModel
    from tests import notes as samples

    notes = [*samples.NOTES[:4], " ".join(samples.SENTENCES * 3)]
    pipeline = LocalNerModel(exported_repository, "ner", threads=1).pipeline
    decoded, rows = FeatureTagger(pipeline)(notes)
    entities = [d.entities for d in decoded]
    sentences = [split_sentences(n, split_words(n)) for n in notes]
    assert rows.shape == (sum(map(len, sentences)), len(PROFILE_COLUMNS))
    firsts = ~np.isnan(rows[:, NOTE_COLUMN])
    assert list(rows[firsts, NOTE_COLUMN]) == [len(s) for s in sentences]  # one count per note
    assert len(sentences[4]) == 12 and rows[firsts, FEATURES.index("windows")][4] == 1
    assert not np.isnan(rows[:, FEATURES.index("oov_word_rate")]).any()  # exported with a vocabulary
    note_of_row = np.cumsum(firsts) - 1
    assert rows[note_of_row == 2, FEATURES.index("oov_word_rate")].max() > 0  # "Ωmega-3 für ...": unseen words
    for k, (note, note_entities) in enumerate(zip(notes, entities)):  # entity rates agree with the entities
        own = rows[note_of_row == k]
        words, offsets = np.array([e - f for f, e in sentences[k]]), split_words(note)
        extents = [(offsets[f][0], offsets[e - 1][1]) for f, e in sentences[k]]
        for column, label in (("disease_per_100_words", "D"), ("treatment_per_100_words", "T")):  # an entity
            expected = [sum(e["label"] == label and e["start"] < end and start < e["end"] for e in note_entities)
                        for start, end in extents]  # across a sentence break counts in each sentence
            assert list(own[:, FEATURES.index(column)] * words / 100) == pytest.approx(expected)
        assert own[:, FEATURES.index("chars")].sum() <= len(note)  # each sentence's extent, not the text between


def test_pipeline_rows_do_not_depend_on_how_sentences_are_grouped(exported_repository: Path) -> None:
    from clients.local import LocalNerModel
    from tests import notes as samples

    pipeline = LocalNerModel(exported_repository, "ner", threads=1).pipeline
    sentences = [*samples.SENTENCES, "Ωmega-3 für Diabetes — ok.", "Fever " + " ".join(["fever"] * 150) + "."]
    _, alone = FeatureTagger(pipeline)(sentences)
    _, together = FeatureTagger(pipeline)([" ".join(sentences), "\n".join(sentences[::-1])])
    assert len(alone) == len(sentences) and len(together) == 2 * len(sentences)
    forward, backward = together[: len(sentences)], together[len(sentences):][::-1]
    for grouped in (forward, backward):  # the same model output per sentence, up to float noise of batching
        np.testing.assert_allclose(grouped[:, : len(FEATURES)], alone[:, : len(FEATURES)], rtol=1e-5, atol=1e-5)
