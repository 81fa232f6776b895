"""Start the flows that monitoring decisions call for, and record every decision.

The backends (:mod:`monitoring.backends`): ``local`` runs the flow here with Metaflow's Runner, blocking, and the
decision records the run's pathspec and status; ``stepfunctions`` starts an execution of the deployed state machine
and the decision records its ARN. A decision made for a window starts its flow under a name of its own
(:func:`~monitoring.backends.execution_name`): made again (a retried MonitorFlow ``act``), it finds the execution it
started instead of starting another. Within the cooldown, the backend is asked how the start that holds it went:
one that failed (FAILED, TIMED_OUT, ABORTED; a failed local run) is recorded as ``run-failed`` and holds nothing.

:func:`act` is the entry point for a drift report (``medner monitor``, MonitorFlow's act step).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from medner.config import PRODUCTION_BRANCH
from monitoring.backends import (
    FLOW_FILES,
    Backend,
    LocalBackend,
    Started,
    StepFunctionsBackend,
    TriggerError,
    execution_name,
    flows_dir,
    make_backend,
)
from monitoring.cloudwatch import NAMESPACE_ENV, publish
from monitoring.policy import (
    DEFAULT_COOLDOWN,
    FAILED_RUN_STATUSES,
    FLOWS,
    RUN_FAILED,
    DecisionLog,
    action_for,
    alert,
    open_log,
    recent_trigger,
    record,
    utcnow,
)

__all__ = ["FLOW_FILES", "Backend", "LocalBackend", "Started", "StepFunctionsBackend", "TriggerError", "act",
           "backend_options", "closing_the_loop", "cooldown_holder", "execution_name", "flows_dir", "make_backend",
           "read_report", "run_status", "start_and_record"]
TRIGGERED_STATUSES = ("successful", "RUNNING", "SUCCEEDED")  # a start that ran, or runs: it holds the cooldown

logger = logging.getLogger("medner.monitoring")


def closing_the_loop(parameters: Mapping[str, Mapping[str, Any]], repository: str, promote_url: str,
                     promote: bool = False) -> dict[str, dict[str, Any]]:
    """Flow parameters that close the loop: with ``promote`` or ``promote_url``, the TrainFlow and ExperimentFlow a
    decision starts export their model to ``repository`` and promote it through every gate (the record every
    server following the registry switches to; the server at ``promote_url`` at once), so a warning ends with a
    retrained model serving (or refused, the champion serving on) and a critical drift with the challenger's;
    parameters given for a flow win. Without either, ``parameters`` unchanged."""
    closed = {flow: dict(values) for flow, values in parameters.items()}
    if promote or promote_url:
        how = {"promote-url": promote_url} if promote_url else {"promote": True}
        for flow in ("TrainFlow", "ExperimentFlow"):
            closed[flow] = {"repository": repository, **how, **closed.get(flow, {})}
    return closed


def backend_options(backend: str, endpoint_url: str | None, branch: str = PRODUCTION_BRANCH) -> dict[str, Any]:
    """:func:`make_backend` options from the command line: the @project branch the flows start on; an AWS
    endpoint matters to Step Functions only."""
    return {"branch": branch, **({"endpoint_url": endpoint_url} if backend == "stepfunctions" and endpoint_url
                                 else {})}


def read_report(path: Path) -> dict[str, Any]:
    """A drift report (``medner monitor check``'s JSON) from ``path``, or standard input for ``-``. Raises
    ValueError naming the source and line when it is not JSON."""
    source = "stdin" if str(path) == "-" else str(path)
    try:
        return json.loads(sys.stdin.read() if str(path) == "-" else Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not a drift report: not JSON (line {err.lineno}: {err.msg})") from None


def start_and_record(flow: str, parameters: Mapping[str, Any], backend: Backend, log: DecisionLog, *, level: str,
                     action: str, reason: str, window: Mapping[str, Any] | None = None, now: datetime | None = None,
                     **extra: Any) -> dict[str, Any]:
    """Start ``flow`` and append the decision; a failure to start is recorded (status ``error``) and raised. A
    decision for a window starts under its :func:`execution_name`: made again, it records the flow that name
    started before (``existing``) instead of starting a second one."""
    name = execution_name(flow, window["window_end"], parameters) if window and window.get("window_end") else None
    named = {"execution_name": name} if name else {}
    try:
        started = backend.start(flow, parameters, name=name) if name else backend.start(flow, parameters)
    except Exception as err:
        log.append(record(level, action, backend.name, f"{reason}; start failed: {err}", status="error", flow=flow,
                          window=window, parameters=parameters, now=now, **named, **extra))
        raise
    status = "triggered" if started.status in TRIGGERED_STATUSES else "failed"
    if started.existing:
        named["existing"] = True  # started by an earlier attempt at this decision
    entry = record(level, action, backend.name, reason, status=status, flow=flow, target=started.target,
                   window=window, parameters=parameters, now=now, run_status=started.status, **named, **extra)
    log.append(entry)
    return entry


def run_status(backend: Backend, entry: Mapping[str, Any]) -> str:
    """How the start recorded in ``entry`` went, by the backend that made it (``status``); ``unknown`` when another
    backend made it, the backend cannot tell, or asking fails (logged): such a start holds the cooldown."""
    status = getattr(backend, "status", None)
    if entry.get("backend") != backend.name or not entry.get("target") or status is None:
        return "unknown"
    try:
        return status(entry["target"])
    except Exception as err:  # a backend's own errors: boto3's, the Metaflow client's
        logger.warning("could not tell how %s went: %s", entry["target"], err)
        return "unknown"


def cooldown_holder(log: DecisionLog, backend: Backend, level: str, now: datetime,
                    cooldown: timedelta = DEFAULT_COOLDOWN) -> dict[str, Any] | None:
    """The start that holds the cooldown for ``level`` (:func:`~monitoring.policy.recent_trigger`), asking the
    backend how it went first: one that failed is recorded as ``run-failed`` (it then holds nothing) and the
    start before it is asked in turn. None: nothing holds it."""
    records = log.read()
    while (previous := recent_trigger(records, level, now, cooldown)) is not None:
        status = run_status(backend, previous)
        if status not in FAILED_RUN_STATUSES:
            return previous
        seen = record(previous["level"], previous["action"], backend.name, f"{previous['flow']} started at "
                      f"{previous['at']} ended {status}: it holds no cooldown", status=RUN_FAILED,
                      flow=previous["flow"], target=previous["target"], window=previous, now=now, run_status=status)
        log.append(seen)
        records.append(seen)
    return None


def act(report: Mapping[str, Any], backend: str | Backend = "local", log: str | Path | DecisionLog | None = None,
        *, parameters: Mapping[str, Mapping[str, Any]] | None = None, cooldown: timedelta = DEFAULT_COOLDOWN,
        reason: str = "", now: datetime | None = None, webhook: str | None = None,
        backend_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Decide and act on a drift report (a DriftReport's ``to_dict()``: level, scores, window_start,
    window_end, counts) and return the decision record, also appended to ``log`` (default:
    ``$MEDNER_DECISION_LOG``, read now, else ``medner.config.DEFAULT_DECISION_LOG``).

    ``parameters`` maps a flow name (TrainFlow, ExperimentFlow) to the parameters it is started with.
    Within ``cooldown`` of a run started for an equally or more severe level the decision is recorded as
    ``deduplicated`` and nothing starts, unless the backend says that run failed (:func:`cooldown_holder`);
    ``critical`` also raises an alert. With ``$MEDNER_CLOUDWATCH_NAMESPACE``
    set, the decision's numbers also go to CloudWatch (:mod:`monitoring.cloudwatch`).
    """
    entry = _act(report, backend, log, parameters=parameters, cooldown=cooldown, reason=reason, now=now,
                 webhook=webhook, backend_options=backend_options)
    if os.environ.get(NAMESPACE_ENV):
        publish(entry, os.environ[NAMESPACE_ENV])
    return entry


def _act(report: Mapping[str, Any], backend: str | Backend, log: str | Path | DecisionLog | None, *,
         parameters: Mapping[str, Mapping[str, Any]] | None, cooldown: timedelta, reason: str, now: datetime | None,
         webhook: str | None, backend_options: Mapping[str, Any] | None) -> dict[str, Any]:
    log = open_log(log)
    level = report["level"]
    action = action_for(level)
    now = now or utcnow()
    backend = make_backend(backend, **dict(backend_options or {}))
    window = {"window_start": report.get("window_start"), "window_end": report.get("window_end")}
    scores = {k: round(float(v), 6) for k, v in (report.get("scores") or {}).items() if isinstance(v, int | float)}
    reason = reason or _drift_reason(level, scores, report)
    if "combined" in report:  # drift reports: the combined score and how many notes/profiles it rests on
        scores["combined"] = report["combined"]
    if report.get("counts"):
        window["counts"] = dict(report["counts"])
    if report.get("estimate"):  # the served model's accuracy estimated on the window (numbers only)
        scores["estimated_entity_f1"] = report["estimate"]["entity_f1"]
    shifts = {"mean_shifts": dict(report["mean_shifts"])} if report.get("mean_shifts") else {}
    if action == "none":
        entry = record(level, action, backend.name, reason, status="none", window=window, now=now, scores=scores,
                       **shifts)
        log.append(entry)
        return entry
    flow = FLOWS[action]
    flow_parameters = dict((parameters or {}).get(flow, {}))
    previous = cooldown_holder(log, backend, level, now, cooldown)
    if previous is not None:
        entry = record(level, action, backend.name, f"{reason}; within the {cooldown} cooldown of {previous['flow']} "
                       f"started at {previous['at']}", status="deduplicated", flow=flow, window=window,
                       parameters=flow_parameters, now=now, scores=scores, deduplicated_by=previous.get("target"),
                       **shifts)
        log.append(entry)
        return entry
    entry = start_and_record(flow, flow_parameters, backend, log, level=level, action=action, reason=reason,
                             window=window, now=now, scores=scores, alert=level == "critical", **shifts)
    if level == "critical":
        alert(entry, webhook)
    return entry


def _drift_reason(level: str, scores: Mapping[str, float], report: Mapping[str, Any]) -> str:
    """The decision's reason: the top distances, and the features a warning of their own came from."""
    if not scores:
        return f"drift level {level}"
    top = sorted(scores.items(), key=lambda item: -item[1])[:3]
    reason = f"drift level {level}; top features " + ", ".join(f"{name} {value:.3f}" for name, value in top)
    if report.get("beyond"):
        reason += "; beyond their own bound: " + ", ".join(sorted(report["beyond"]))
    shifts = report.get("mean_shifts") or {}
    if report.get("means_beyond"):
        reason += "; means beyond their own bound: " + ", ".join(
            f"{name} {shifts[name]:+.3f} sd" if name in shifts else name for name in sorted(report["means_beyond"]))
    return reason
