"""Per-note monitoring features: exact values on hand-made notes, and what export publishes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medner.data import read_behealthy
from medner.inference import tokenize_notes
from medner.spans import split_words
from monitoring.features import FEATURES, LOW_CONFIDENCE, batch_features, read_vocabulary, write_vocabulary


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from medner.config import default_base_model

    return AutoTokenizer.from_pretrained(default_base_model())


def features_of(tokenizer, notes, labels, confidences, vocabulary, max_length=128):
    batch = tokenize_notes(tokenizer, notes, max_length=max_length, stride=4)
    rows = batch_features(notes, batch, labels, [np.asarray(c) for c in confidences], tokenizer.unk_token_id,
                          vocabulary)
    return batch, [dict(zip(FEATURES, row)) for row in rows]


def test_features_of_a_known_note(tokenizer) -> None:
    assert FEATURES == ("chars", "wordpieces", "windows", "unknown_wordpiece_rate", "oov_word_rate",
                        "disease_per_100_words", "treatment_per_100_words", "confidence_mean", "confidence_min",
                        "low_confidence_rate")
    note = "Asthma 🙂 treated with Metformin and beta blockers ."  # 🙂 is [UNK]; metformin is 3 pieces
    labels = ["D", "O", "O", "O", "T", "O", "T", "T", "O"]
    confidence = [0.95, 0.5, 0.99, 0.8, 0.97, 1.0, 0.91, 0.89, 1.0]
    _, [row] = features_of(tokenizer, [note], [labels], [confidence], {"asthma", "treated", "with", "and", "."})
    assert row["chars"] == len(note)
    assert row["wordpieces"] == 12 and row["windows"] == 1  # 9 words, metformin 3 pieces, blockers 2
    assert row["unknown_wordpiece_rate"] == pytest.approx(1 / 12)
    assert row["oov_word_rate"] == pytest.approx(4 / 9)  # 🙂, metformin (lower-cased), beta, blockers
    assert row["disease_per_100_words"] == pytest.approx(100 / 9)
    assert row["treatment_per_100_words"] == pytest.approx(200 / 9)  # two runs of T: two treatments
    assert row["confidence_mean"] == pytest.approx(np.mean(confidence))
    assert row["confidence_min"] == pytest.approx(0.5)
    assert row["low_confidence_rate"] == pytest.approx(sum(c < LOW_CONFIDENCE for c in confidence) / 9)


def test_long_note_windows_and_missing_vocabulary(tokenizer) -> None:
    words = ["fever"] * 40
    note = " ".join(words)
    batch, [row] = features_of(tokenizer, [note], [["D", "D", "O"] * 13 + ["D"]], [[1.0] * 40], None, max_length=16)
    assert row["windows"] == batch.notes[0].n_windows > 1 and row["wordpieces"] == 40
    assert row["unknown_wordpiece_rate"] == 0.0
    assert math.isnan(row["oov_word_rate"])  # no vocabulary published: unknown, not 0
    assert row["disease_per_100_words"] == pytest.approx(100 * 14 / 40)
    assert row["low_confidence_rate"] == 0.0


def test_vocabulary_round_trip(tmp_path: Path) -> None:
    write_vocabulary(["Asthma", "asthma", "Tamoxifen", " ", "."], tmp_path)
    assert (tmp_path / "train_vocabulary.txt").read_text() == ".\nasthma\ntamoxifen\n"
    assert read_vocabulary(tmp_path) == {".", "asthma", "tamoxifen"}
    assert read_vocabulary(tmp_path / "missing") is None


@pytest.mark.slow
def test_export_publishes_vocabulary_and_reference_profile(exported_repository: Path, tiny_corpus: Path) -> None:
    from monitoring.profiles import read_profile

    splits = read_behealthy(tiny_corpus)
    expected = {w.lower() for s in splits["train"] for w in s.tokens}
    for model in ("ner", "ner_int8"):
        version = exported_repository / model / "1"
        assert read_vocabulary(version) == expected
        view = read_profile(version / "reference_profile.bin")
        assert set(view.get_columns()) == set(FEATURES)
        summary = view.get_column("chars").to_summary_dict()
        assert summary["counts/n"] == len(splits["test"])
        oov = view.get_column("oov_word_rate").to_summary_dict()
        assert oov["counts/nan"] == 0 and oov["distribution/max"] == 0  # the tiny corpus' test words are in train


def test_pipeline_features_match_its_entities(exported_repository: Path) -> None:
    from clients.local import LocalNerModel
    from tests.notes import NOTES, SENTENCES

    notes = [*NOTES[:4], " ".join(SENTENCES * 3)]  # the last: one window per sentence
    pipeline = LocalNerModel(exported_repository, "ner", threads=1).pipeline
    entities, rows = pipeline.with_features(notes)
    assert entities == pipeline(notes) and rows.shape == (len(notes), len(FEATURES))
    assert list(rows[:, 0]) == [len(n) for n in notes]
    assert rows[4, 2] == 12
    assert not np.isnan(rows[:, 4]).any()  # exported with a vocabulary
    assert rows[2, 4] > 0  # "Ωmega-3 für ..." has words the training corpus never had
    for note, note_entities, row in zip(notes, entities, rows):  # entities per 100 words agree with the entities
        words = len(split_words(note))
        assert row[5] == pytest.approx(100 * sum(e["label"] == "D" for e in note_entities) / words)
        assert row[6] == pytest.approx(100 * sum(e["label"] == "T" for e in note_entities) / words)
