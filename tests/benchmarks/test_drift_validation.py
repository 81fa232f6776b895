"""Drift validation's judgement of its windows (benchmarks/drift_validation.py): the true drop's standard error, the
critical goal on windows with support enough for a verdict and the windows short of it, where the estimate errs, and
the support a critical verdict needs."""

import math

import pytest

from benchmarks.drift_validation import (
    SHIFTS,
    VALIDATION_SIZES,
    Window,
    drop_standard_error,
    estimate_parts_table,
    fit_estimate_spread,
    summarise,
)


def window(pool: str, size: str, shift: str, seed: int, true_f1: float, level: str = "none",
           estimated_f1: float | None = None, support: int = 1000) -> Window:
    estimated = true_f1 if estimated_f1 is None else estimated_f1
    return Window(pool, shift, size, seed, level=level,
                  estimate={"entity_f1": estimated, "precision": estimated, "recall": estimated,
                            "reference_f1": 0.64, "support": support},
                  truth={"entity_f1": true_f1, "precision": true_f1, "recall": true_f1})


def grid(support: dict[str, int] | None = None, **cells: list[tuple[float, str]]) -> list[Window]:
    """Two unshifted windows at 0.66 and 0.68 in every pool and size, every shift at 0.67 unless ``cells`` names
    its dev/multix100 windows (``drug_swaps=[(true F1, level), ...]``); each size's estimates rest on ``support``
    (default 1,000)."""
    windows, seed = [], 0
    for pool in ("dev", "test"):
        for size in VALIDATION_SIZES:
            for shift in SHIFTS:
                own = cells.get(shift.replace("-", "_")) if (pool, size) == ("dev", "multix100") else None
                values = [(0.66, "none"), (0.68, "none")] if shift == "none" else own or [(0.67, "none")] * 2
                for true_f1, level in values:
                    seed += 1
                    windows.append(window(pool, size, shift, seed, true_f1, level,
                                          support=(support or {}).get(size, 1000)))
    return windows


def test_drop_standard_error_adds_both_means_variances():
    assert drop_standard_error([0.60, 0.62], [0.66, 0.68, 0.70]) == pytest.approx(
        math.sqrt(0.0002 / 2 + 0.0004 / 3))
    assert drop_standard_error([0.60], [0.66, 0.68]) == 0.0  # one window: no spread to read


def test_a_cell_past_max_drop_with_a_window_short_of_critical_misses_the_goal_and_names_it():
    windows = grid(drug_swaps=[(0.60, "critical"), (0.61, "warning")])  # drop 0.065 from 0.67
    goals = summarise(windows, max_drop=0.05, min_support=600)["goals"]["critical_beyond_max_drop"]
    assert not goals["passed"]
    assert goals["missed"] == ["dev/multix100/drug-swaps"]
    [short] = goals["short_windows"]
    assert (short["cell"], short["level"], short["true_f1"]) == ("dev/multix100/drug-swaps", "warning", 0.61)


def test_a_cell_within_max_drop_needs_no_critical_and_its_drop_has_a_standard_error():
    summary = summarise(grid(drug_swaps=[(0.63, "warning"), (0.63, "warning")]), max_drop=0.05)
    assert summary["goals"]["critical_beyond_max_drop"] == {"min_support": 0, "missed": [], "short_windows": [],
                                                            "undecided": [], "passed": True}
    cell = summary["cells"]["dev/multix100/drug-swaps"]
    assert cell["true_drop"] == pytest.approx(0.04)
    assert cell["true_drop_se"] == pytest.approx(round(math.sqrt(0.0002 / 2), 4))  # the shifted side has no spread


def test_estimate_parts_show_the_side_a_shift_hides():
    windows = [window("dev", "multix100", "drug-swaps", 1, 0.60, estimated_f1=0.64)]
    windows[0].estimate.update(precision=0.61, recall=0.66)
    row = next(line for line in estimate_parts_table([vars(w) for w in windows]) if line.startswith("| drug-swaps"))
    assert row == "| drug-swaps | +0.010 | +0.060 | +0.040 | - | - | - |"


def test_only_windows_with_support_enough_for_a_verdict_are_judged_critical():
    windows = grid(support={"multix100": 500}, drug_swaps=[(0.60, "warning"), (0.61, "warning")])
    goals = summarise(windows, max_drop=0.05, min_support=600)["goals"]["critical_beyond_max_drop"]
    assert goals["passed"] and goals["missed"] == []
    assert goals["undecided"] == ["dev/multix100/drug-swaps"]  # said, not hidden
    assert summarise(windows, max_drop=0.05, min_support=500)["goals"]["critical_beyond_max_drop"]["missed"] == [
        "dev/multix100/drug-swaps"]


def test_the_support_critical_needs_is_where_the_estimate_s_spread_is_half_the_tolerance():
    groups = {}
    for name, support, errors in (("small", 100, [-0.05, 0.05]), ("large", 400, [-0.025, 0.025])):
        groups[name] = [window("dev", name, "none", k, 0.66, estimated_f1=0.66 + e, support=support)
                        for k, e in enumerate(errors)]
    fit = fit_estimate_spread(groups, max_drop=0.05)
    assert fit["scale"] == pytest.approx(0.5)  # spread 0.05 at 100, 0.025 at 400: 0.5 / sqrt(support)
    assert fit["critical_min_support"] == 400  # 0.5 / sqrt(n) = 0.025
    assert fit["sizes"]["small"]["error_sd"] == pytest.approx(0.05)
