"""Drift of live requests against a model version's reference profile.

Per feature, the score is the **Hellinger distance** between the window's and the reference's distributions,
computed by whylogs' drift algorithm (``whylogs.viz.drift.column_drift_algorithms.Hellinger``) from the
KLL sketches in the profiles (a histogram over shared bins). Why Hellinger and not whylogs' default KS test:
a p-value measures how *sure* we are that two samples differ, not *how much* they differ, so with the
thousands of notes of a busy window it reaches ~0 for shifts of no consequence, and on small windows it
swings with the sample size (whylogs issue 684). The Hellinger distance is an effect size, bounded in
[0, 1] (0: same distribution, 1: disjoint), comparable across features. Its noise shrinks as windows grow
(the distance between two samples of one distribution falls like ``sqrt(1/n + 1/m)``), so the bound a window must
pass depends on its size: a score that is noise for 100 one-sentence notes is far outside the noise of a window of
thousands of rows (results/drift_calibration.md). ``min_notes`` still keeps out windows too small to say anything.

Profiles have one row per sentence (:mod:`monitoring.features`), so scores do not depend on how clients
group sentences into notes; the rows scored are sentences, ``min_notes`` counts notes (the profiles carry a note
count).

The window's level (:class:`DriftThresholds`): **warning** when the mean of the ``top_k`` highest feature scores
(a real shift moves several: out-of-vocabulary words, entity rates, confidences) is beyond the noise for the
window's size, or when one feature is beyond its own noise for that size (a shift that moves one feature far, as
typing errors move ``misspelling_rate``; each feature's bound clears its own in-distribution spread, so a noisy
feature alone does not alarm), or when one feature's **mean** moved beyond its own noise for that size. The mean shift
(the window's mean minus the reference's, in the reference's standard deviations) is read from the profiles'
distribution metrics; it sees a feature that is nearly always 0 (a rate of rare events: misspelt words) drift while
the distance between its binned distributions barely moves, since nearly all of both sit in the first bin. Its noise
falls like the distance's (``sqrt(1/n + 1/m)``), so it has a curve of its own too (:data:`FEATURE_MEAN_NOISE`).
**critical** when, besides, the served model's accuracy
estimated from its own confidences (:mod:`monitoring.estimation`) fell more than ``max_drop`` below the
reference's, less the estimate's own error (:meth:`DriftThresholds.critical_drop`): the model is now worse here, so
re-experiment rather than retrain. The noise curve comes from
in-distribution windows of every size only (``benchmarks/drift_validation.py calibrate``); how the levels and the
estimate hold on labelled shifts, ``benchmarks/drift_validation.py validate`` (results/drift_validation.md).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitoring.estimation import column_distribution, window_estimate
from monitoring.features import DISTANCE_FEATURES, FEATURES, MEAN_ONLY_FEATURES, NOTE_SENTENCES
from monitoring.policy import DEFAULT_QUALITY_DROP, Level, isoformat

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView


def noise_term(rows: int, reference_rows: int) -> float:
    """``sqrt(1/rows + 1/reference_rows)``: how the distance between two samples of one distribution shrinks."""
    return math.sqrt(1 / max(rows, 1) + 1 / max(reference_rows, 1))


# Each feature's own noise curve, (floor, scale) as for the combined score with a wider margin, from the same
# in-distribution windows (benchmarks/drift_validation.py calibrate, results/drift_calibration.md). A feature that
# never moved there (unknown_wordpiece_rate) has none: with no noise to clear, any [UNK] piece would alarm.
FEATURE_NOISE: dict[str, tuple[float, float]] = {
    "chars": (0.1, 2.7),
    "confidence_mean": (0.08, 3.2),
    "confidence_min": (0.02, 4.3),
    "disease_per_100_words": (0.01, 3.0),
    "entity_oov_rate": (0.17, 3.1),
    "low_confidence_rate": (0.05, 3.3),
    "misspelling_rate": (0.06, 2.3),
    "oov_word_rate": (0.07, 3.0),
    "treatment_per_100_words": (0.1, 2.2),
    "windows": (0.07, 1.5),
    "wordpieces": (0.07, 2.9),
}
# Each feature's mean-shift noise curve, (floor, scale) on the absolute shift, from the same windows and fit
# (benchmarks/drift_validation.py calibrate, results/drift_calibration.md). A feature constant on the reference
# (``windows``, ``unknown_wordpiece_rate``) has no standard deviation to measure a shift in, so no mean shift.
FEATURE_MEAN_NOISE: dict[str, tuple[float, float]] = {
    "chars": (0.2, 4.1),
    "confidence_mean": (0.04, 4.1),
    "confidence_min": (0.03, 3.9),
    "disease_per_100_words": (0.01, 3.6),
    "entity_oov_rate": (0.12, 4.8),
    "low_confidence_rate": (0.05, 4.3),
    "misspelling_rate": (0.11, 2.8),
    "oov_word_rate": (0.14, 4.1),
    "treatment_oov_rate": (0.15, 5.6),
    "treatment_per_100_words": (0.12, 2.8),
    "wordpieces": (0.26, 4.8),
}


@dataclass
class DriftThresholds:
    """When a window is drifting, and when that drift means the model got worse.

    * ``warning``: the combined score (the mean of the ``top_k`` highest per-feature Hellinger distances) is
      above the noise expected for a window of its size against this reference,
      ``noise_floor + noise_scale * sqrt(1/rows + 1/reference_rows)`` (rows: the sentences scored on each side;
      :meth:`warning_bound`), or one feature's distance is above its own, from ``feature_noise``
      (:meth:`feature_bounds`), or one feature's absolute mean shift above its own, from ``mean_noise``;
      ``warning`` > 0 replaces them all with one fixed bound on the combined score.
    * ``critical``: at warning, and the window's estimated entity F1 (:mod:`monitoring.estimation`) is more than
      ``max_drop - estimate_error`` below the reference's (the champion on its test sentences, through the same
      estimator; :meth:`critical_drop`), with a ``support`` (the entities the estimate rests on) of at least
      ``critical_min_support``: on fewer, the estimate's own spread is too wide to tell a drop of ``max_drop``
      from none, so the window stays at warning; ``critical`` > 0 also makes a combined score at or above it
      critical (a fixed bound; 0: off).
    * ``min_notes``: fewer notes in the window gives level "none" (too little evidence).
    """

    # From in-distribution windows of every size only (benchmarks/drift_validation.py calibrate,
    # results/drift_calibration.md): the noise curve over them all, raised to clear each size's max + 4 std.
    noise_floor: float = 0.11
    noise_scale: float = 2.7
    max_drop: float = DEFAULT_QUALITY_DROP  # entity F1 (0-1), as for quality from reviews
    # The estimate's own error, taken off max_drop for a window already drifting: its mean absolute error on
    # in-distribution windows (results/drift_validation.md, "Estimate, in distribution"). Shifted text reads a point or
    # two high (same file, "bias"), so a true drop just past the tolerance was a coin flip; a drifting window is
    # retrained anyway, and critical only adds a re-experiment, so the doubt goes to critical.
    estimate_error: float = 0.02
    # The support from which the estimate's spread in distribution is at most half of max_drop (two spreads between
    # a drop of max_drop and none): benchmarks/drift_validation.py calibrate, results/drift_calibration.md
    critical_min_support: int = 600
    warning: float = 0.0
    critical: float = 0.0
    min_notes: int = 100
    top_k: int = 2
    feature_noise: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(FEATURE_NOISE))
    mean_noise: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(FEATURE_MEAN_NOISE))

    def __post_init__(self) -> None:
        if not 0 <= self.warning <= 1 or not 0 <= self.critical <= 1:
            raise ValueError(f"fixed thresholds must be in [0, 1] (0: unset), got {self.warning}, {self.critical}")
        if self.warning and self.critical and self.critical < self.warning:
            raise ValueError(f"thresholds need warning <= critical, got {self.warning}, {self.critical}")
        if (self.min_notes < 1 or self.top_k < 1 or min(self.noise_scale, self.noise_floor, self.max_drop,
                                                             self.estimate_error, self.critical_min_support) < 0):
            raise ValueError("min_notes and top_k must be positive; noise_floor, noise_scale, max_drop, "
                             "estimate_error and critical_min_support not negative")

    def critical_drop(self) -> float:
        """The estimated entity F1 drop beyond which a drifting window is critical: ``max_drop`` less the
        estimate's own error, not below 0."""
        return round(max(self.max_drop - self.estimate_error, 0.0), 6)

    def warning_bound(self, rows: int, reference_rows: int) -> float:
        """The combined score from which a window of ``rows`` sentences is at warning against a reference of
        ``reference_rows``."""
        if self.warning:
            return self.warning
        return self.noise_floor + self.noise_scale * noise_term(rows, reference_rows)

    def feature_bounds(self, rows: int, reference_rows: int, means: bool = False) -> dict[str, float]:
        """Each feature's own warning bound for a window of ``rows`` sentences (``means``: on its absolute mean
        shift, else on its distance); none with a fixed ``warning``."""
        if self.warning:
            return {}
        s = noise_term(rows, reference_rows)
        curves = self.mean_noise if means else self.feature_noise
        return {name: round(floor + scale * s, 6) for name, (floor, scale) in curves.items()}

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as reports carry them: every field, and the :meth:`critical_drop` they give."""
        return {**asdict(self), "critical_drop": self.critical_drop()}

    @classmethod
    def overridden(cls, **values: float | int | None) -> DriftThresholds:
        """The defaults, with each value given and not None in its place (command-line options)."""
        return cls(**{**asdict(cls()), **{k: v for k, v in values.items() if v is not None}})


DEFAULT_THRESHOLDS = DriftThresholds()


@dataclass
class DriftReport:
    """The drift of one window. ``counts``: notes and profiles in the window, notes in the reference, and,
    when the profiles have one row per sentence, the sentences (the rows scored) on both sides.
    ``warning_bound``: the combined score this window's size needed for warning; ``beyond``: the features beyond
    their own bound for that size (:meth:`DriftThresholds.feature_bounds`), with that bound; ``mean_shifts``: each
    feature's mean shift (:func:`mean_shifts`), and ``means_beyond`` those beyond their own bound, with it.
    ``estimate``: the estimated ``entity_f1``, ``precision`` and ``recall`` of the served model on the window, the
    ``reference_f1`` estimated on the reference and the ``drop`` between them (None when the profiles carry no
    estimate)."""

    level: Level
    scores: dict[str, float]
    window_start: str
    window_end: str
    counts: dict[str, int]
    combined: float | None = None
    reason: str = ""
    thresholds: dict[str, Any] = field(default_factory=dict)
    warning_bound: float | None = None
    beyond: dict[str, float] = field(default_factory=dict)
    estimate: dict[str, float] | None = None
    mean_shifts: dict[str, float] = field(default_factory=dict)
    means_beyond: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


def shared_columns(target: DatasetProfileView, reference: DatasetProfileView,
                   columns: tuple[str, ...] = DISTANCE_FEATURES) -> list[str]:
    """The ``columns`` both profiles have (by default the features scored by distance): what is scored, and what
    whylogs' HTML report draws."""
    return [c for c in columns if c in target.get_columns() and c in reference.get_columns()]


def hellinger_scores(target: DatasetProfileView, reference: DatasetProfileView,
                     columns: tuple[str, ...] | None = None) -> dict[str, float]:
    """Hellinger distance per feature column present, with a non-empty distribution, in both views (default: the
    features scored by distance)."""
    from whylogs.viz.drift.column_drift_algorithms import Hellinger, calculate_drift_scores

    shared = shared_columns(target, reference, columns or DISTANCE_FEATURES)
    # whylogs warns for every column outside the drift map, and logs a warning when a column is constant
    # (``windows`` is 1 for nearly every note): neither is news
    bins_logger = logging.getLogger("whylogs.viz.utils.quantile_stats")
    level = bins_logger.level
    bins_logger.setLevel(logging.ERROR)  # setLevel, not assignment: it clears the loggers' level caches
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = calculate_drift_scores(target, reference, drift_map={c: Hellinger() for c in shared})
    finally:
        bins_logger.setLevel(level)
    return {c: round(float(scores[c]["statistic"]), 6) for c in shared if scores.get(c)}


def mean_shifts(target: DatasetProfileView, reference: DatasetProfileView,
                columns: tuple[str, ...] | None = None) -> dict[str, float]:
    """Per feature column with values on both sides and a spread on the reference: the window's mean minus the
    reference's, in the reference's standard deviations (signed; what the profiles' distribution metrics hold)."""
    shifts = {}
    for name in columns or FEATURES:
        window, base = (column_distribution(view, name) for view in (target, reference))
        if window is None or base is None or base.stddev <= 0:
            continue
        shifts[name] = round((float(window.mean.value) - float(base.mean.value)) / base.stddev, 6)
    return shifts


def _rows(view: DatasetProfileView, column: str) -> tuple[int, int] | None:
    """(values, nulls) counted in a column of a profile, or None when the profile has no such column."""
    found = view.get_column(column)
    metric = found.get_metric("counts") if found is not None else None
    return None if metric is None else (int(metric.n.value), int(metric.null.value))


def sentence_count(view: DatasetProfileView | None) -> int:
    """Rows in a profile: sentences (every sentence has ``chars``); notes, for a profile without
    :data:`~monitoring.features.NOTE_SENTENCES` (one row per note)."""
    if view is None:
        return 0
    counted = _rows(view, "chars")
    if counted is None:  # a profile without the size column: any column's rows
        column = next(iter(view.get_columns()), None)
        counted = _rows(view, column) if column is not None else None
    return counted[0] if counted is not None else 0


def note_count(view: DatasetProfileView | None) -> int:
    """Notes in a profile: the non-null values of its note column (set on each note's first sentence only);
    every row, for a profile without that column (one row per note)."""
    if view is None:
        return 0
    counted = _rows(view, NOTE_SENTENCES)
    return counted[0] - counted[1] if counted is not None else sentence_count(view)


def has_sentence_rows(view: DatasetProfileView | None) -> bool:
    """Whether a profile has one row per sentence (it carries the note column) rather than one per note."""
    return view is not None and NOTE_SENTENCES in view.get_columns()


def combine(scores: dict[str, float], top_k: int) -> float:
    """The mean of the ``top_k`` highest scores (all of them when fewer)."""
    top = sorted(scores.values(), reverse=True)[:top_k]
    return sum(top) / len(top) if top else 0.0


def estimate_against(target: DatasetProfileView, reference: DatasetProfileView) -> dict[str, float] | None:
    """The window's accuracy estimate with the reference's F1 estimate and the drop from it; None when either
    profile carries no estimate."""
    window, baseline = window_estimate(target), window_estimate(reference)
    if window is None or baseline is None:
        return None
    return {**window, "reference_f1": baseline["entity_f1"],
            "drop": round(baseline["entity_f1"] - window["entity_f1"], 4)}


def level_of(combined: float, bound: float, estimate: dict[str, float] | None, thresholds: DriftThresholds,
             beyond: dict[str, float] | None = None) -> Level:
    """The level of a window's combined score, given its warning ``bound``, the features ``beyond`` their own
    bound and its accuracy ``estimate``."""
    if combined < bound and not beyond:
        return "none"
    if thresholds.critical and combined >= thresholds.critical:
        return "critical"
    return "critical" if estimate is not None and worse(estimate, thresholds) else "warning"


def worse(estimate: dict[str, float], thresholds: DriftThresholds) -> bool:
    """Whether an accuracy estimate (:func:`estimate_against`) fell past the critical drop, on enough support."""
    return estimate["drop"] > thresholds.critical_drop() and estimate["support"] >= thresholds.critical_min_support


def compare(target: DatasetProfileView | None, reference: DatasetProfileView, start: datetime, end: datetime,
            thresholds: DriftThresholds | None = None, profiles: int = 1) -> DriftReport:
    """The drift report of a (merged) window profile against the reference profile."""
    thresholds = thresholds or DriftThresholds()
    notes = note_count(target)
    counts = {"notes": notes, "profiles": profiles, "reference_notes": note_count(reference)}
    if has_sentence_rows(target) or has_sentence_rows(reference):  # rows are sentences: say how many
        counts |= {"sentences": sentence_count(target), "reference_sentences": sentence_count(reference)}
    base = {"window_start": isoformat(start), "window_end": isoformat(end), "counts": counts,
            "thresholds": thresholds.to_dict()}
    if notes < thresholds.min_notes:
        return DriftReport("none", {}, reason=f"too few notes: {notes} < min_notes {thresholds.min_notes}", **base)
    scores = hellinger_scores(target, reference)
    if not scores:
        raise ValueError("no feature is shared by the window and the reference profiles")
    combined = round(combine(scores, thresholds.top_k), 6)
    rows = sentence_count(target), sentence_count(reference)
    bound = round(thresholds.warning_bound(*rows), 6)
    beyond = {name: limit for name, limit in thresholds.feature_bounds(*rows).items()
              if scores.get(name, 0.0) >= limit}
    shifts = mean_shifts(target, reference)
    means_beyond = {name: limit for name, limit in thresholds.feature_bounds(*rows, means=True).items()
                    if abs(shifts.get(name, 0.0)) >= limit}
    estimate = estimate_against(target, reference)
    level = level_of(combined, bound, estimate, thresholds, {**beyond, **means_beyond})
    top = ", ".join(f"{name}={scores[name]:.3f}" for name in sorted(scores, key=scores.get, reverse=True)[:3])
    reason = (f"mean of top {thresholds.top_k} Hellinger distances {combined:.3f} "
              f"{'>=' if combined >= bound else '<'} {bound:.3f} for this window's size (top: {top})")
    if beyond:
        reason += "; beyond their own bound: " + ", ".join(f"{name} {scores[name]:.3f} >= {limit:.3f}"
                                                           for name, limit in beyond.items())
    if means_beyond:
        reason += "; means beyond their own bound: " + ", ".join(
            f"{name} {shifts[name]:+.3f} sd (|shift| >= {limit:.3f})" for name, limit in means_beyond.items())
    if estimate is not None:
        reason += (f"; estimated entity F1 {estimate['entity_f1']:.3f} against {estimate['reference_f1']:.3f} on the "
                   f"reference (drop {estimate['drop']:.3f}, critical above {thresholds.critical_drop():.3f} on a "
                   f"support of {thresholds.critical_min_support}+)")
        if estimate["drop"] > thresholds.critical_drop() and not worse(estimate, thresholds):
            reason += (f"; too little support for a critical verdict: {estimate['support']} < "
                       f"{thresholds.critical_min_support} entities")
    missing = ([name for name in DISTANCE_FEATURES if name not in scores]
               + [name for name in MEAN_ONLY_FEATURES if name not in shifts])
    if missing:  # e.g. oov_word_rate when the model version has no training vocabulary
        reason += f"; not scored (no values on one side): {', '.join(missing)}"
    if has_sentence_rows(target) and not has_sentence_rows(reference):
        reason += ("; the reference has one row per note (exported before per-sentence profiles): multi-sentence "
                   "notes score as drift against it, re-export the model version")
    return DriftReport(level, scores, combined=combined, reason=reason, warning_bound=bound, beyond=beyond,
                       estimate=estimate, mean_shifts=shifts, means_beyond=means_beyond, **base)
