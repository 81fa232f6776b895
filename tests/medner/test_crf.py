"""The CRF baseline's word features."""

from __future__ import annotations

from medner.crf import word_features


def test_word_features_see_neighbours_and_sentence_edges() -> None:
    first = word_features(["Aspirin", "for", "pain"], 0)
    assert first["lower"] == "aspirin" and first["istitle"] and first["BOS"] and first["+1:lower"] == "for"
    assert "-1:lower" not in first and word_features(["Aspirin", "for", "pain"], 2)["EOS"]
