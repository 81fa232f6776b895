"""The backends that start the flows monitoring decisions call for, and tell how a started flow went.

* ``local``: Metaflow's ``Runner`` runs ``flows/<flow>.py run`` with the flow's parameters here, blocking
  until the run ends (a local monitor runs one thing at a time; a long TrainFlow belongs in the cloud),
  on the @project branch the backend acts for (``--production`` for ``prod``); the run is tagged with the
  decision's name (a decision made again finds that run instead of running another) and
  :meth:`LocalBackend.status` reads its state back with the Metaflow client.
* ``stepfunctions``: boto3 ``start_execution`` on the state machine that ``python flows/<flow>.py
  --production step-functions create`` deployed (or another branch's), found by name like Metaflow names it
  (``medner.prod.TrainFlow``: project, branch, flow; prefixed with ``$METAFLOW_SFN_STATE_MACHINE_PREFIX_``
  when set), with the input ``step-functions trigger`` builds:
  ``{"Parameters": "<JSON of {parameter name: value}>"}`` (flow defaults fill the rest). It returns at
  once. A decision's name (:func:`execution_name`) is the execution's name, so a retried start of the same
  decision finds the execution the first one started instead of starting another (AWS keeps names 90 days);
  ``describe_execution`` tells how it went. ``endpoint_url`` (or ``$AWS_ENDPOINT_URL``) selects the endpoint,
  e.g. a moto server in tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medner.config import PRODUCTION_BRANCH, PROJECT
from medner.runs import branch_options

FLOW_FILES = {"DataFlow": "data_flow.py", "TrainFlow": "train_flow.py", "ExperimentFlow": "experiment_flow.py"}
DECISION_TAG = "medner_decision"  # local runs are tagged medner_decision:<execution_name>
# How a local run reads in the Metaflow client: successful, failed (its end failed, or a task's last attempt ended
# not ok: retries spent), else running
_RUN_STATE = """import sys
from metaflow import Run, namespace
namespace(None)
run = Run(sys.argv[1])
def spent(task):
    md = task.metadata_dict
    return md.get("attempt_ok") == "False" and md.get("attempt-done") == md.get("attempt")
failed = run.finished or any(not t.finished and spent(t) for s in run for t in s)
print("successful" if run.successful else "failed" if failed else "running")"""
# The latest run of a flow carrying every tag given, or nothing
_TAGGED = """import sys
from metaflow import Flow, namespace
from metaflow.exception import MetaflowNotFound
namespace(None)
try:
    print(next(iter(Flow(sys.argv[1]).runs(*sys.argv[2:]))).pathspec)
except (MetaflowNotFound, StopIteration):
    pass"""


class TriggerError(RuntimeError):
    """A flow could not be started (not deployed, unknown flow, bad endpoint)."""


def flows_dir() -> Path:
    """The project's flows/ folder ($MEDNER_FLOWS_DIR overrides; resolved so a symlinked package works)."""
    return Path(os.environ.get("MEDNER_FLOWS_DIR") or Path(__file__).resolve().parents[1] / "flows")


@dataclass
class Started:
    """A flow started by a backend: ``target`` is a run pathspec (local) or an execution ARN; ``existing``: the
    decision had started it before (a retried start), ``status`` is how it stands now."""

    backend: str
    flow: str
    target: str
    status: str  # local: the run's final status (successful / failed); stepfunctions: RUNNING, or an earlier one's
    existing: bool = False


class Backend(Protocol):
    name: str

    def start(self, flow: str, parameters: Mapping[str, Any], *, name: str | None = None) -> Started: ...

    def status(self, target: str) -> str: ...


def execution_name(flow: str, window_end: str, parameters: Mapping[str, Any]) -> str:
    """A decision's name, the same each time it is made again: the flow, the window's end and a digest of the
    parameters, as AWS allows execution names (1-80 characters of ``A-Za-z0-9-_``), e.g.
    ``TrainFlow-20261128T120000Z-1a2b3c4d``."""
    stamp = re.sub(r"[^0-9A-Za-z]", "", window_end)
    digest = hashlib.sha256(json.dumps(dict(parameters), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^0-9A-Za-z_-]', '', flow)[:40]}-{stamp[:30]}-{digest}"


class LocalBackend:
    """Run flows here with Metaflow's Runner (blocking), on the @project ``branch``. ``env`` is added to this
    process' environment for the run (e.g. METAFLOW_DATASTORE_SYSROOT_LOCAL); ``cwd`` is where it runs."""

    name = "local"

    def __init__(self, env: Mapping[str, str] | None = None, cwd: str | Path | None = None, show_output: bool = False,
                 branch: str = PRODUCTION_BRANCH):
        self.env, self.cwd, self.show_output, self.branch = dict(env or {}), cwd, show_output, branch
        self.top_level = branch_options(branch)  # raises ValueError for a branch no run can be started on

    def start(self, flow: str, parameters: Mapping[str, Any], *, name: str | None = None) -> Started:
        from metaflow import Runner

        if flow not in FLOW_FILES:
            raise TriggerError(f"unknown flow {flow!r}; expected one of {', '.join(FLOW_FILES)}")
        # Runner takes Python names; flow parameters are named like their CLI options (data-run)
        kwargs = {key.replace("-", "_"): value for key, value in parameters.items()}
        if name:
            tag = kwargs["tags"] = [f"{DECISION_TAG}:{name}"]
            earlier = self._client(_TAGGED, flow, tag[0], f"project_branch:{self.branch}")
            if earlier:  # this decision ran its flow before (a retried act whose record was lost)
                return Started(self.name, flow, earlier, self.status(earlier), existing=True)
        with Runner(str(flows_dir() / FLOW_FILES[flow]), show_output=self.show_output, env=self.env,
                    cwd=str(self.cwd) if self.cwd else None, pylint=False, **self.top_level) as runner:
            result = runner.run(**kwargs)
            return Started(self.name, flow, result.run.pathspec, result.status)

    def status(self, target: str) -> str:
        """How the run ``target`` (a pathspec) stands, by the Metaflow client in the runs' environment:
        successful, failed, running, or unknown (no such run here)."""
        return self._client(_RUN_STATE, target) or "unknown"

    def _client(self, script: str, *args: str) -> str:
        """The last word ``script`` prints, run with the Metaflow client where this backend's runs are (its own
        process: the client reads its datastore settings once); empty when it prints none or fails."""
        proc = subprocess.run([sys.executable, "-c", script, *args], env={**os.environ, **self.env},
                              cwd=str(self.cwd) if self.cwd else None, capture_output=True, text=True, timeout=300)
        words = proc.stdout.split()
        return words[-1] if proc.returncode == 0 and words else ""


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

    def start(self, flow: str, parameters: Mapping[str, Any], *, name: str | None = None) -> Started:
        """Start an execution named ``name`` (else AWS names it). A running execution of that name with this
        input is returned by AWS itself; a finished one (or one with other input) raises ExecutionAlreadyExists:
        that execution is returned, with its status, instead of a second start."""
        arn = self.state_machine_arn(flow)
        execution_input = json.dumps({"Parameters": json.dumps(dict(parameters))})
        if len(execution_input) > 20480:  # metaflow's own limit (AWS Batch job specification size)
            raise TriggerError("flow parameters exceed the 20 KiB Step Functions input limit")
        try:
            response = self.client.start_execution(stateMachineArn=arn, input=execution_input,
                                                   **({"name": name} if name else {}))
        except self.client.exceptions.ExecutionAlreadyExists:
            execution = f"{arn.replace(':stateMachine:', ':execution:', 1)}:{name}"  # AWS's form of its ARN
            return Started(self.name, flow, execution, self.status(execution), existing=True)
        return Started(self.name, flow, response["executionArn"], "RUNNING")

    def status(self, target: str) -> str:
        """The execution's status: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE."""
        return self.client.describe_execution(executionArn=target)["status"]


def make_backend(name: str | Backend, **options: Any) -> Backend:
    """A backend by name (``local`` or ``stepfunctions``) with its options, or the backend given."""
    if not isinstance(name, str):
        return name
    if name == "local":
        return LocalBackend(**options)
    if name == "stepfunctions":
        return StepFunctionsBackend(**options)
    raise ValueError(f"unknown backend {name!r}; expected local or stepfunctions")
