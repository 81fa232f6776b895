"""Bias monitoring: the served model's inputs and estimated accuracy per group of notes (a clinic, a specialty:
:mod:`medner.groups`), and a verdict when one group departs from the others.

The served ``ner`` models profile the notes of a request that names a group twice: into the model's profile (all
notes, what drift reads) and into that group's, segmented by whylogs (:func:`monitoring.profiles.segment_views`).
For each group of a window, :func:`assess_groups` compares

* the group with **the other groups of the same window** merged (the verdict): the same per-feature Hellinger
  scores and size-aware bound as drift (:func:`monitoring.drift.compare`), so a group is *diverging* (level warning)
  when its features moved from the rest's beyond the noise for both sizes, and critical when its estimated entity
  F1 is also more than ``max_drop`` less the estimate's error below the rest's (as a window against the
  reference). Diverging groups are set apart one at a time, the furthest first, and the others compared again
  without them: the rest a group is judged against holds no group already found diverging;
* the group with **the reference** (the served version's test sentences), for context;

and a group with fewer than ``min_notes`` notes gets no verdict, said so. Numbers only: a group is a label.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medner.config import DEFAULT_REPOSITORY
from medner.config import profile_dir as resolve_profile_dir
from monitoring.drift import DEFAULT_THRESHOLDS, DriftThresholds, compare, note_count, sentence_count
from monitoring.policy import DIVERGING, IN_LINE, NO_VERDICT, SEVERITY, DecisionLog, isoformat, open_log, record
from monitoring.profile_store import group_folder, list_groups, list_profiles, merge_profiles

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView


@dataclass
class GroupVerdict:
    """One group of a window: ``level`` against the rest of the window (none, warning: diverging, critical:
    diverging and estimated worse); ``against_rest`` and ``against_reference``: the combined score, its bound for
    the sizes compared, the top features and the estimated F1 drop; ``estimate``: the group's estimated accuracy."""

    group: str
    notes: int
    sentences: int
    verdict: str
    level: str = "none"
    against_rest: dict[str, Any] = field(default_factory=dict)
    against_reference: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, float] | None = None
    reason: str = ""
    quality: dict[str, Any] | None = None  # the champion's entity F1 from this group's reviews (random share)


@dataclass
class GroupsReport:
    window_start: str
    window_end: str
    min_notes: int
    groups: list[GroupVerdict]

    @property
    def level(self) -> str:
        """The most severe group level (none without a diverging group)."""
        return max((g.level for g in self.groups), key=SEVERITY.get, default="none")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "level": self.level}


def read_groups(root: str | Path, model: str, start: datetime, end: datetime) -> dict[str, DatasetProfileView]:
    """Each group's merged profile of the window (groups without a profile in it left out)."""
    views = {group: merge_profiles(list_profiles(root, group_folder(model, group), start, end))
             for group in list_groups(root, model)}
    return {group: view for group, view in views.items() if view is not None}


def _summary(report: Any) -> dict[str, Any]:
    top = sorted(report.scores, key=report.scores.get, reverse=True)[:3]
    return {"level": report.level, "combined": report.combined, "bound": report.warning_bound,
            "top": {name: report.scores[name] for name in top}, "scores": report.scores,
            "estimated_f1_drop": (report.estimate or {}).get("drop")}


def assess_groups(views: dict[str, DatasetProfileView], reference: DatasetProfileView, start: datetime,
                  end: datetime, thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> GroupsReport:
    """The verdict on each group of a window (see the module)."""
    judged = {g: v for g, v in views.items() if note_count(v) >= thresholds.min_notes}
    versus_rest = _peel(judged, start, end, thresholds)
    verdicts = []
    for group, view in sorted(views.items()):
        notes, sentences = note_count(view), sentence_count(view)
        if group not in judged:
            verdicts.append(GroupVerdict(group, notes, sentences, NO_VERDICT,
                                         reason=f"too few notes: {notes} < {thresholds.min_notes}"))
            continue
        versus_reference = compare(view, reference, start, end, thresholds)
        if group not in versus_rest:
            verdicts.append(GroupVerdict(group, notes, sentences, NO_VERDICT,
                                         against_reference=_summary(versus_reference),
                                         estimate=versus_reference.estimate,
                                         reason="no other group with enough notes in the window"))
            continue
        report = versus_rest[group]
        verdicts.append(GroupVerdict(
            group, notes, sentences, DIVERGING if report.level != "none" else IN_LINE, report.level,
            _summary(report), _summary(versus_reference), versus_reference.estimate,
            f"against the other groups: {report.reason}"))
    return GroupsReport(isoformat(start), isoformat(end), thresholds.min_notes, verdicts)


def _peel(views: dict[str, DatasetProfileView], start: datetime, end: datetime, thresholds: DriftThresholds
          ) -> dict[str, Any]:
    """Each group against the others still in line: the group furthest beyond its bound is set apart and the rest
    compared again without it, until none departs (so one diverging group does not make the others, whose "rest"
    it is part of, look diverging too)."""
    remaining, settled = dict(views), {}
    while len(remaining) >= 2:
        reports = {g: compare(v, reduce(lambda a, b: a.merge(b), [o for h, o in remaining.items() if h != g]),
                              start, end, thresholds) for g, v in remaining.items()}
        worst = max(reports, key=lambda g: reports[g].combined / reports[g].warning_bound)
        if reports[worst].level == "none":
            return {**settled, **reports}
        settled[worst] = reports[worst]
        del remaining[worst]
    return settled


def check_groups(profile_dir: str, model: str, *, repository: str | Path = DEFAULT_REPOSITORY, reference: str = "",
                 window: str = "1h", start: str | None = None, end: str | None = None,
                 thresholds: DriftThresholds = DEFAULT_THRESHOLDS, review_db: str | None = None) -> GroupsReport:
    """``medner monitor check --by-group``: :func:`assess_groups` of a window of the store, with each group's
    quality from reviews when ``review_db`` is given. Raises ValueError when the window has no profiles by group."""
    from monitoring.profile_store import read_profile
    from monitoring.service import default_reference, time_window

    start_at, end_at = time_window(window, start, end)
    reference_view = read_profile(reference or default_reference(repository, model))
    report = _judge(profile_dir, model, reference_view, start_at, end_at, thresholds, review_db, repository)
    if report is None:
        raise ValueError(f"no {model} profiles by group in {profile_dir} for {isoformat(start_at)} .. "
                         f"{isoformat(end_at)} (requests name a group with --group / NerClient(group=...))")
    return report


def check_groups_serialized(profile_dir: str, model: str, reference: bytes, start: str, end: str,
                            review_db: str | None = None, repository: str | Path = DEFAULT_REPOSITORY, *,
                            min_notes: int = 0, max_drop: float | None = None) -> dict[str, Any] | None:
    """MonitorFlow's ``--by-group``: the group check of a window whose reference an earlier step read (serialized
    view, ISO bounds): ``{"report": GroupsReport.to_dict(), "record": groups_record(...)}``, None when the window
    has no profiles by group."""
    from whylogs.core import DatasetProfileView

    from monitoring.policy import parse_time

    thresholds = DriftThresholds.overridden(min_notes=min_notes or None, max_drop=max_drop)
    report = _judge(profile_dir, model, DatasetProfileView.deserialize(reference), parse_time(start),
                    parse_time(end), thresholds, review_db, repository)
    return None if report is None else {"report": report.to_dict(), "record": groups_record(report)}


def _judge(profile_dir: str, model: str, reference_view: DatasetProfileView, start: datetime, end: datetime,
           thresholds: DriftThresholds, review_db: str | None, repository: str | Path) -> GroupsReport | None:
    root = resolve_profile_dir(profile_dir)
    if not root:
        raise ValueError("no profile store: pass --profile-dir or set MEDNER_PROFILE_DIR")
    views = read_groups(root, model, start, end)
    if not views:
        return None
    report = assess_groups(views, reference_view, start, end, thresholds)
    if review_db:
        from monitoring.quality import review_quality_by_group

        quality = review_quality_by_group(review_db, Path(repository))
        for verdict in report.groups:
            verdict.quality = quality.get(verdict.group)
    return report


def groups_record(report: GroupsReport) -> dict[str, Any]:
    """The decision-log record of a group check: per group, its numbers (the gauges and CloudWatch metrics)."""
    def reviewed(g: GroupVerdict) -> float | None:
        return None if not g.quality or g.quality["too_few"] else g.quality["entity_f1"]

    numbers = {g.group: {"level": g.level, "verdict": g.verdict, "notes": g.notes,
                         "combined_vs_rest": g.against_rest.get("combined"),
                         "combined_vs_reference": g.against_reference.get("combined"),
                         "estimated_entity_f1": (g.estimate or {}).get("entity_f1"),
                         "reviewed_entity_f1": reviewed(g)}
               for g in report.groups}
    diverging = [g.group for g in report.groups if g.verdict == DIVERGING]
    reason = (f"groups diverging from the others: {', '.join(diverging)}" if diverging
              else "no group diverging from the others")
    return record(report.level, "none", "-", reason, status="observed", kind="groups",
                  window={"window_start": report.window_start, "window_end": report.window_end}, groups=numbers)


def record_groups(entry: dict[str, Any], log: str | Path | DecisionLog | None = None) -> dict[str, Any]:
    """Append a :func:`groups_record` to the decision log (and put its metrics in CloudWatch when
    ``$MEDNER_CLOUDWATCH_NAMESPACE`` is set, as every decision does)."""
    from monitoring.cloudwatch import NAMESPACE_ENV, publish

    open_log(log).append(entry)
    if os.environ.get(NAMESPACE_ENV):
        publish(entry, os.environ[NAMESPACE_ENV])
    return entry


def groups_table(report: GroupsReport) -> list[str]:
    """The report as a text table: a line per group."""
    lines = [f"{'group':<16} {'notes':>6} {'verdict':<11} {'level':<8} {'vs rest':>8} {'bound':>6} "
             f"{'vs ref':>7} {'est. F1':>7} {'reviewed F1':>11}  top features against the rest"]
    for g in report.groups:
        rest, ref = g.against_rest, g.against_reference
        f1 = (g.estimate or {}).get("entity_f1")
        reviewed = "-" if not g.quality else (f"{_num(g.quality['entity_f1'])} ({g.quality['notes']})"
                                              + ("?" if g.quality["too_few"] else ""))
        top = ", ".join(f"{k} {v:.2f}" for k, v in rest.get("top", {}).items()) or g.reason
        lines.append(f"{g.group:<16} {g.notes:>6} {g.verdict:<11} {g.level:<8} {_num(rest.get('combined')):>8} "
                     f"{_num(rest.get('bound'), 2):>6} {_num(ref.get('combined')):>7} {_num(f1):>7} {reviewed:>11}  "
                     f"{top}")
    return lines


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
