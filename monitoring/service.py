"""The drift check's entry points: a window of a profile store read and compared with a served version's reference
profile (:func:`read_window`, then :func:`assess`: the one way into :func:`monitoring.drift.compare`), for
``medner monitor check`` (:func:`check_window`) and MonitorFlow's steps (:func:`read_window`, :func:`check_serialized`:
its window travels between steps serialized, :func:`decide`). :mod:`monitoring.drift` measures; this module reads
and acts, the role :mod:`medner.steps` plays for TrainFlow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medner.config import DEFAULT_REPOSITORY, PRODUCTION_BRANCH
from medner.config import profile_dir as resolve_profile_dir
from medner.registry import champion
from monitoring.drift import DEFAULT_THRESHOLDS, DriftReport, DriftThresholds, compare, shared_columns
from monitoring.policy import FLOWS, action_for, as_utc, isoformat, parse_time, utcnow
from monitoring.profile_store import list_profiles, merge_profiles, read_profile

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView


@dataclass
class WindowProfiles:
    """A window read from the store: its bounds, the reference's location, how many profiles it merged, and the
    merged and reference views (``serialized()``: bytes, as MonitorFlow's artifacts carry them)."""

    start: datetime
    end: datetime
    reference: str
    profiles: int
    target: DatasetProfileView | None
    reference_view: DatasetProfileView

    def serialized(self) -> tuple[bytes | None, bytes]:
        return (self.target.serialize() if self.target is not None else None), self.reference_view.serialize()


def read_window(profile_dir: str, model: str, *, repository: str | Path = DEFAULT_REPOSITORY, reference: str = "",
                window: str = "1h", start: str | None = None, end: str | None = None) -> WindowProfiles:
    """Merge ``model``'s profiles of the window (``window`` ending at ``end``, default now, or from ``start``) in the
    store ``profile_dir`` (default ``$MEDNER_PROFILE_DIR``) and read the reference profile (default: the champion's
    in ``repository``). Raises ValueError for a bad window or no store, FileNotFoundError when the reference is
    missing."""

    root = resolve_profile_dir(profile_dir)
    if not root:
        raise ValueError("no profile store: pass --profile-dir or set MEDNER_PROFILE_DIR")
    start_at, end_at = time_window(window, start, end)
    location = reference or default_reference(repository, model)
    target, reference_view, profiles = window_views(root, model, location, start_at, end_at)
    return WindowProfiles(start_at, end_at, location, profiles, target, reference_view)


def assess(window: WindowProfiles, thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> DriftReport:
    """The drift report of a window against its reference."""
    return compare(window.target, window.reference_view, window.start, window.end, thresholds, window.profiles)


def check_window(profile_dir: str, model: str, *, repository: str | Path = DEFAULT_REPOSITORY,
                 reference: str | None = None, window: str = "1h", start: str | None = None, end: str | None = None,
                 thresholds: DriftThresholds = DEFAULT_THRESHOLDS, html: bool = False
                 ) -> tuple[DriftReport, str | None]:
    """``medner monitor check``: :func:`assess` of :func:`read_window` and, with ``html``, whylogs' HTML drift
    report (else None). Raises ValueError for a window with no profiles, and what :func:`read_window` raises."""
    read = read_window(profile_dir, model, repository=repository, reference=reference or "", window=window,
                       start=start, end=end)
    if read.profiles == 0:
        raise ValueError(f"no {model} profiles in {profile_dir} for {read.start:%Y-%m-%dT%H:%M:%SZ} .. "
                         f"{read.end:%Y-%m-%dT%H:%M:%SZ}")
    report = assess(read, thresholds)
    return report, drift_report_html(read.target, read.reference_view) if html else None


def check_serialized(target: bytes | None, reference: bytes, start: str, end: str, warning: float = 0.0,
                     critical: float = 0.0, min_notes: int = 0, profiles: int = 1, max_drop: float | None = None
                     ) -> tuple[dict[str, Any], str | None]:
    """MonitorFlow's check step: :func:`assess` of a window read in an earlier step (serialized views, ISO bounds);
    the report (``to_dict()``) and whylogs' HTML report (None without a window profile). Zero thresholds take
    :class:`~monitoring.drift.DriftThresholds`' defaults (fixed ``warning``/``critical``: off)."""
    from whylogs.core import DatasetProfileView

    thresholds = DriftThresholds.overridden(warning=warning or None, critical=critical or None,
                                            min_notes=min_notes or None, max_drop=max_drop)
    window = WindowProfiles(parse_time(start), parse_time(end), "", profiles,
                            DatasetProfileView.deserialize(target) if target else None,
                            DatasetProfileView.deserialize(reference))
    report = assess(window, thresholds)
    page = drift_report_html(window.target, window.reference_view) if window.target is not None else None
    return report.to_dict(), page


def window_views(root: str | Path, model: str, reference: str | Path, start: datetime, end: datetime
                 ) -> tuple[DatasetProfileView | None, DatasetProfileView, int]:
    """The merged window profile (None when empty), the reference profile and the window's profile count.
    Raises FileNotFoundError when the reference is missing."""
    location = str(reference)
    if "://" not in location and not Path(location).is_file():
        raise FileNotFoundError(f"no reference profile at {location}")
    locations = list_profiles(root, model, start, end)
    return merge_profiles(locations), read_profile(location), len(locations)


def default_reference(repository: str | Path, model: str) -> str:
    """``reference_profile.bin`` (export writes it) of the version that serves, the registry's champion: a path in
    a folder repository, an ``s3://`` URI in a bucket (read from there: no model files are downloaded)."""
    from medner.s3 import is_s3, opened

    with opened(repository, full=False) as folder:
        version = champion(folder)
    if version is None:
        raise FileNotFoundError(f"{str(repository).rstrip('/')}/{model}: no model version (run `medner export`)")
    if is_s3(repository):
        return f"{str(repository).rstrip('/')}/{model}/{version}/reference_profile.bin"
    return str(Path(repository) / model / str(version) / "reference_profile.bin")


def drift_report_html(target_view: DatasetProfileView, reference_view: DatasetProfileView) -> str:
    """whylogs' summary drift report (Hellinger per feature) as a standalone HTML page. The page loads
    d3/handlebars/jQuery from public CDNs, as whylogs' templates do: a browser offline shows no charts."""
    from whylogs.viz import NotebookProfileVisualizer
    from whylogs.viz.drift.column_drift_algorithms import Hellinger

    visualizer = NotebookProfileVisualizer()
    visualizer.set_profiles(target_profile_view=target_view, reference_profile_view=reference_view)
    shared = shared_columns(target_view, reference_view)
    if shared:
        visualizer.add_drift_config(column_names=shared, algorithm=Hellinger())
    report = visualizer.summary_drift_report(height="1100px").data
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>medner drift report</title></head>"
            f"<body>{report}</body></html>\n")


def decide(report: dict[str, Any], backend: str = "local", log: str = "", flow_parameters: str = "{}",
           dry_run: bool = False, reason: str = "", branch: str = PRODUCTION_BRANCH,
           window: dict[str, str] | None = None) -> dict[str, Any]:
    """The policy's decision on ``report`` (``monitoring.triggers.act``: start the flow on the @project ``branch``,
    record it, with ``reason`` or one made from the drift scores); in a ``dry_run`` only the action it would
    take, nothing started or recorded. ``window`` (``window_start``, ``window_end``): the window a report without
    one was made for (MonitorFlow's quality from reviews), which names the flow it starts."""
    from monitoring.triggers import act, backend_options

    report = {**(window or {}), **report}
    parameters = json.loads(flow_parameters or "{}")
    if not isinstance(parameters, dict):
        raise ValueError("trigger parameters must be a JSON object: {flow name: {parameter: value}}")
    if dry_run:
        action = action_for(report["level"])
        return {"level": report["level"], "action": action, "flow": FLOWS.get(action, ""), "backend": backend,
                "status": "dry-run", "target": "", "window_start": report.get("window_start"),
                "window_end": report.get("window_end")}
    return act(report, backend, log, parameters=parameters, reason=reason,
               backend_options=backend_options(backend, None, branch))


def parse_window(text: str) -> float:
    """Seconds in a window length such as ``90s``, ``15m``, ``1h``, ``2d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = float(text[:-1]), units[text[-1].lower()]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"bad window {text!r}: expected a number and a unit s/m/h/d, like 1h") from None
    if value <= 0:
        raise ValueError(f"bad window {text!r}: must be positive")
    return value * unit


def time_window(window: str = "1h", start: str | None = None, end: str | None = None,
                now: datetime | None = None) -> tuple[datetime, datetime]:
    """The [start, end) of a check in UTC: ``start``/``end`` as ISO 8601 (naive means UTC); a missing end is
    ``now``, a missing start is ``window`` (:func:`parse_window`) before the end."""
    stop = parse_time(end) if end else as_utc(now or utcnow())
    begin = parse_time(start) if start else stop - timedelta(seconds=parse_window(window))
    if begin >= stop:
        raise ValueError(f"empty window: start {isoformat(begin)} is not before end {isoformat(stop)}")
    return begin, stop
