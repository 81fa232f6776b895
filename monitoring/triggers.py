"""Start the flows that monitoring decisions call for, and record every decision.

Two backends:

* ``local``: Metaflow's ``Runner`` runs ``flows/<flow>.py run`` with the flow's parameters here, blocking
  until the run ends (a local monitor runs one thing at a time; a long TrainFlow belongs in the cloud),
  on the @project branch the backend acts for (``--production`` for ``prod``), and the decision records the
  run's pathspec and status.
* ``stepfunctions``: boto3 ``start_execution`` on the state machine that ``python flows/<flow>.py
  --production step-functions create`` deployed (or another branch's), found by name like Metaflow names it
  (``medner.prod.TrainFlow``: project, branch, flow; prefixed with ``$METAFLOW_SFN_STATE_MACHINE_PREFIX_``
  when set), with the input ``step-functions trigger`` builds:
  ``{"Parameters": "<JSON of {parameter name: value}>"}`` (flow defaults fill the rest). It returns at
  once; the decision records the execution ARN. ``endpoint_url`` (or ``$AWS_ENDPOINT_URL``) selects
  the endpoint, e.g. a moto server in tests.

:func:`act` is the entry point for a drift report (``medner monitor``, MonitorFlow's act step).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from medner.config import PRODUCTION_BRANCH, PROJECT
from medner.runs import branch_options
from monitoring.cloudwatch import NAMESPACE_ENV, publish
from monitoring.policy import (
    DEFAULT_COOLDOWN,
    FLOWS,
    DecisionLog,
    action_for,
    alert,
    open_log,
    recent_trigger,
    record,
    utcnow,
)

FLOW_FILES = {"DataFlow": "data_flow.py", "TrainFlow": "train_flow.py", "ExperimentFlow": "experiment_flow.py"}


class TriggerError(RuntimeError):
    """A flow could not be started (not deployed, unknown flow, bad endpoint)."""


def flows_dir() -> Path:
    """The project's flows/ folder ($MEDNER_FLOWS_DIR overrides; resolved so a symlinked package works)."""
    return Path(os.environ.get("MEDNER_FLOWS_DIR") or Path(__file__).resolve().parents[1] / "flows")


@dataclass
class Started:
    """A flow started by a backend: ``target`` is a run pathspec (local) or an execution ARN."""

    backend: str
    flow: str
    target: str
    status: str  # local: the run's final status (successful / failed); stepfunctions: RUNNING


class Backend(Protocol):
    name: str

    def start(self, flow: str, parameters: Mapping[str, Any]) -> Started: ...


class LocalBackend:
    """Run flows here with Metaflow's Runner (blocking), on the @project ``branch``. ``env`` is added to this
    process' environment for the run (e.g. METAFLOW_DATASTORE_SYSROOT_LOCAL); ``cwd`` is where it runs."""

    name = "local"

    def __init__(self, env: Mapping[str, str] | None = None, cwd: str | Path | None = None, show_output: bool = False,
                 branch: str = PRODUCTION_BRANCH):
        self.env, self.cwd, self.show_output = dict(env or {}), cwd, show_output
        self.top_level = branch_options(branch)  # raises ValueError for a branch no run can be started on

    def start(self, flow: str, parameters: Mapping[str, Any]) -> Started:
        from metaflow import Runner

        if flow not in FLOW_FILES:
            raise TriggerError(f"unknown flow {flow!r}; expected one of {', '.join(FLOW_FILES)}")
        # Runner takes Python names; flow parameters are named like their CLI options (data-run)
        kwargs = {name.replace("-", "_"): value for name, value in parameters.items()}
        with Runner(str(flows_dir() / FLOW_FILES[flow]), show_output=self.show_output, env=self.env,
                    cwd=str(self.cwd) if self.cwd else None, pylint=False, **self.top_level) as runner:
            result = runner.run(**kwargs)
            return Started(self.name, flow, result.run.pathspec, result.status)


class StepFunctionsBackend:
    """Start executions of the state machines deployed for the @project ``branch``, with boto3."""

    name = "stepfunctions"

    def __init__(self, endpoint_url: str | None = None, region: str | None = None, prefix: str | None = None,
                 branch: str = PRODUCTION_BRANCH):
        import boto3

        self.client = boto3.client("stepfunctions", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
                                   region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        self.prefix = prefix if prefix is not None else os.environ.get("METAFLOW_SFN_STATE_MACHINE_PREFIX", "")
        self.branch = branch

    def state_machine_name(self, flow: str) -> str:
        """As metaflow's resolve_state_machine_name names a @project flow's deployment: project.branch.flow, with
        the prefix; cut to 60 characters plus a hash of the whole name when longer."""
        name = f"{PROJECT}.{self.branch}.{flow}"
        if self.prefix and not name.startswith(self.prefix):
            name = f"{self.prefix}_{name}"
        if len(name) > 60:
            digest = base64.b32encode(hashlib.sha1(name.encode()).digest()).decode()[:16].lower()
            name = f"{name[:60]}-{digest}"
        return name

    def state_machine_arn(self, flow: str) -> str:
        name = self.state_machine_name(flow)
        for page in self.client.get_paginator("list_state_machines").paginate():
            for machine in page["stateMachines"]:
                if machine["name"] == name:
                    return machine["stateMachineArn"]
        script = FLOW_FILES.get(flow, "<flow>.py")
        deploy = " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in branch_options(self.branch).items())
        raise TriggerError(f"no state machine named {name!r}: deploy it with "
                           f"`python flows/{script} {deploy + ' ' if deploy else ''}step-functions create`")

    def start(self, flow: str, parameters: Mapping[str, Any]) -> Started:
        arn = self.state_machine_arn(flow)
        execution_input = json.dumps({"Parameters": json.dumps(dict(parameters))})
        if len(execution_input) > 20480:  # metaflow's own limit (AWS Batch job specification size)
            raise TriggerError("flow parameters exceed the 20 KiB Step Functions input limit")
        response = self.client.start_execution(stateMachineArn=arn, input=execution_input)
        return Started(self.name, flow, response["executionArn"], "RUNNING")


def closing_the_loop(parameters: Mapping[str, Mapping[str, Any]], repository: str, promote_url: str
                     ) -> dict[str, dict[str, Any]]:
    """Flow parameters that close the loop: with ``promote_url``, the TrainFlow and ExperimentFlow a decision starts
    export their model to ``repository`` and promote it on that server through every gate, so a warning ends
    with a retrained model serving (or refused, the champion serving on) and a critical drift with the
    challenger's; parameters given for a flow win. Without ``promote_url``, ``parameters`` unchanged."""
    closed = {flow: dict(values) for flow, values in parameters.items()}
    if promote_url:
        for flow in ("TrainFlow", "ExperimentFlow"):
            closed[flow] = {"repository": repository, "promote-url": promote_url, **closed.get(flow, {})}
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


def make_backend(name: str | Backend, **options: Any) -> Backend:
    """A backend by name (``local`` or ``stepfunctions``) with its options, or the backend given."""
    if not isinstance(name, str):
        return name
    if name == "local":
        return LocalBackend(**options)
    if name == "stepfunctions":
        return StepFunctionsBackend(**options)
    raise ValueError(f"unknown backend {name!r}; expected local or stepfunctions")


def start_and_record(flow: str, parameters: Mapping[str, Any], backend: Backend, log: DecisionLog, *, level: str,
                     action: str, reason: str, window: Mapping[str, Any] | None = None, now: datetime | None = None,
                     **extra: Any) -> dict[str, Any]:
    """Start ``flow`` and append the decision; a failure to start is recorded (status ``error``) and raised."""
    try:
        started = backend.start(flow, parameters)
    except Exception as err:
        log.append(record(level, action, backend.name, f"{reason}; start failed: {err}", status="error", flow=flow,
                          window=window, parameters=parameters, now=now, **extra))
        raise
    status = "triggered" if started.status in ("successful", "RUNNING") else "failed"
    entry = record(level, action, backend.name, reason, status=status, flow=flow, target=started.target,
                   window=window, parameters=parameters, now=now, run_status=started.status, **extra)
    log.append(entry)
    return entry


def act(report: Mapping[str, Any], backend: str | Backend = "local", log: str | Path | DecisionLog | None = None,
        *, parameters: Mapping[str, Mapping[str, Any]] | None = None, cooldown: timedelta = DEFAULT_COOLDOWN,
        reason: str = "", now: datetime | None = None, webhook: str | None = None,
        backend_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Decide and act on a drift report (a DriftReport's ``to_dict()``: level, scores, window_start,
    window_end, counts) and return the decision record, also appended to ``log`` (default:
    ``$MEDNER_DECISION_LOG``, read now, else ``medner.config.DEFAULT_DECISION_LOG``).

    ``parameters`` maps a flow name (TrainFlow, ExperimentFlow) to the parameters it is started with.
    Within ``cooldown`` of a run started for an equally or more severe level the decision is recorded as
    ``deduplicated`` and nothing starts; ``critical`` also raises an alert. With ``$MEDNER_CLOUDWATCH_NAMESPACE``
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
    reason = reason or _drift_reason(level, scores)
    if "combined" in report:  # drift reports: the combined score and how many notes/profiles it rests on
        scores["combined"] = report["combined"]
    if report.get("counts"):
        window["counts"] = dict(report["counts"])
    if report.get("estimate"):  # the served model's accuracy estimated on the window (numbers only)
        scores["estimated_entity_f1"] = report["estimate"]["entity_f1"]
    if action == "none":
        entry = record(level, action, backend.name, reason, status="none", window=window, now=now, scores=scores)
        log.append(entry)
        return entry
    flow = FLOWS[action]
    flow_parameters = dict((parameters or {}).get(flow, {}))
    previous = recent_trigger(log.read(), level, now, cooldown)
    if previous is not None:
        entry = record(level, action, backend.name, f"{reason}; within the {cooldown} cooldown of {previous['flow']} "
                       f"started at {previous['at']}", status="deduplicated", flow=flow, window=window,
                       parameters=flow_parameters, now=now, scores=scores, deduplicated_by=previous.get("target"))
        log.append(entry)
        return entry
    entry = start_and_record(flow, flow_parameters, backend, log, level=level, action=action, reason=reason,
                             window=window, now=now, scores=scores, alert=level == "critical")
    if level == "critical":
        alert(entry, webhook)
    return entry


def _drift_reason(level: str, scores: Mapping[str, float]) -> str:
    if not scores:
        return f"drift level {level}"
    top = sorted(scores.items(), key=lambda item: -item[1])[:3]
    return f"drift level {level}; top features " + ", ".join(f"{name} {value:.3f}" for name, value in top)
