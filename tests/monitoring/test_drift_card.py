"""The MonitorFlow card's per-feature chart (monitoring/drift_card.py)."""

import struct

from monitoring.drift_card import scores_chart


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG header."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_mean_shifts_get_a_panel_and_mean_only_features_a_row():
    distances = {"chars": 0.1, "oov_word_rate": 0.3}
    alone = png_size(scores_chart(distances, warning=0.2))
    both = png_size(scores_chart(distances, 0.2, 0.0, {"chars": 0.2, "oov_word_rate": 1.1, "treatment_oov_rate": 0.5},
                                 {"treatment_oov_rate": 0.35}))
    assert both[0] > alone[0]  # a second panel beside the distances
    assert both[1] > alone[1]  # a third row: treatment_oov_rate, scored by its mean alone
