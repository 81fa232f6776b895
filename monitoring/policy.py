"""What a drift level (or a quality drop, or new annotated data) makes the system do, and the record of it.

* level -> action: ``none`` -> nothing; ``warning`` -> ``retrain`` (TrainFlow); ``critical`` ->
  ``reexperiment`` (ExperimentFlow) plus an alert. A quality drop on annotated live samples counts as critical.
* Cooldown: one drift episode triggers one run. A decision is *deduplicated* (nothing starts) when a run
  of the same or a more severe level was started within the cooldown (default 24 h); an escalation
  (warning -> critical) still triggers. A start its backend reports failed (FAILED, TIMED_OUT, ABORTED; a failed
  local run) holds no cooldown: :func:`monitoring.triggers.cooldown_holder` asks, and records it as ``run-failed``.
* Every decision is appended to a decision log (a local JSONL file, or one object per record under an
  ``s3://bucket/prefix``):
  when, level, action, flow, backend, the run pathspec or execution ARN, the reason, the window.
  Records carry statistics and identifiers only, never note text or entity strings.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from medner.config import decision_log
from medner.s3 import is_s3, s3_client, split_s3_url

Level = Literal["none", "warning", "critical"]
Action = Literal["none", "retrain", "reexperiment", "ingest"]

LEVELS: tuple[Level, ...] = ("none", "warning", "critical")
SEVERITY = {level: rank for rank, level in enumerate(LEVELS)}
ACTIONS: dict[str, Action] = {"none": "none", "warning": "retrain", "critical": "reexperiment"}
FLOWS = {"retrain": "TrainFlow", "reexperiment": "ExperimentFlow", "ingest": "DataFlow"}
DEFAULT_COOLDOWN = timedelta(hours=24)
# a group's verdict against the other groups of its window (monitoring.bias)
DIVERGING, IN_LINE, NO_VERDICT = "diverging", "in line", "no verdict"
DEFAULT_QUALITY_DROP = 0.05  # entity F1 points (0.05 = 5 points) below the champion's test F1
ALERT_WEBHOOK_ENV = "MEDNER_ALERT_WEBHOOK"
RUN_FAILED = "run-failed"  # the status of a record saying a triggered start's run or execution failed
FAILED_RUN_STATUSES = frozenset({"failed", "FAILED", "TIMED_OUT", "ABORTED"})  # local runs', Step Functions'

log = logging.getLogger("medner.monitoring")


def action_for(level: str) -> Action:
    """The action a drift level calls for: ``none``, ``retrain`` or ``reexperiment``."""
    if level not in ACTIONS:
        raise ValueError(f"unknown drift level {level!r}; expected one of {', '.join(LEVELS)}")
    return ACTIONS[level]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken to be UTC already."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def isoformat(moment: datetime) -> str:
    """``2026-01-31T14:00:00Z``: how reports and the decision log write times."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (naive means UTC) in UTC; ValueError naming the expected form otherwise."""
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"bad time {text!r}: expected ISO 8601 such as 2026-01-31T14:00:00Z") from None


# --- the decision log ----------------------------------------------------------------------------

class DecisionLog:
    """An append-only log of decisions: a local JSONL file or an ``s3://bucket/prefix``.

    Several writers share it (MonitorFlow, ``medner monitor quality``, the inbox), so an append never rewrites
    what others wrote. A local append is one ``write`` of one line to a file opened in append mode (the kernel
    keeps concurrent appends whole). S3 has no append: each record is an object of its own,
    ``<prefix>/<at>-<random>.json``, and reading lists the prefix in key order (time order). A JSONL object
    at the location itself (how earlier versions wrote the log) is read first. ``endpoint_url`` (or
    ``AWS_ENDPOINT_URL``) points boto3 at another endpoint, e.g. a moto server in tests.
    """

    def __init__(self, location: str | Path, endpoint_url: str | None = None):
        self.location = str(location)
        self.endpoint_url = endpoint_url

    @property
    def is_s3(self) -> bool:
        return is_s3(self.location)

    def _s3(self) -> tuple[Any, str, str]:
        bucket, key = split_s3_url(self.location)
        if not key:
            raise ValueError(f"{self.location}: expected s3://bucket/prefix")
        return s3_client(self.endpoint_url), bucket, key

    def _s3_lines(self) -> list[str]:
        client, bucket, key = self._s3()
        lines: list[str] = []
        try:  # the single JSONL object earlier versions kept at the location
            lines += client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8").splitlines()
        except client.exceptions.NoSuchKey:
            pass
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key}/"):
            for item in page.get("Contents", []):  # listed in key order: time order
                lines.append(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode("utf-8"))
        return lines

    def read(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        if self.is_s3:
            lines = self._s3_lines()
        else:
            path = Path(self.location)
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def append(self, record: dict[str, Any]) -> None:
        """Append one record."""
        line = json.dumps(record, sort_keys=True)
        if self.is_s3:
            import uuid

            client, bucket, key = self._s3()
            stamp = utcnow().strftime("%Y%m%dT%H%M%S.%fZ")
            client.put_object(Bucket=bucket, Key=f"{key}/{stamp}-{uuid.uuid4().hex}.json", Body=line.encode("utf-8"))
            return
        path = Path(self.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


# --- cooldown ------------------------------------------------------------------------------------

def open_log(log: str | Path | DecisionLog | None) -> DecisionLog:
    """``log`` as a DecisionLog; None: :func:`medner.config.decision_log` (``$MEDNER_DECISION_LOG`` or the default)."""
    return log if isinstance(log, DecisionLog) else DecisionLog(decision_log(log))


def record(level: str, action: str, backend: str, reason: str, *, status: str, flow: str = "",
           target: str = "", window: Mapping[str, Any] | None = None, parameters: Mapping[str, Any] | None = None,
           now: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """A decision record, as :class:`DecisionLog` keeps them: identifiers and statistics only (never note text)."""
    window = window or {}
    entry = {"at": isoformat(now or utcnow()), "level": level, "action": action, "flow": flow, "backend": backend,
             "target": target, "status": status, "reason": reason, "window_start": window.get("window_start"),
             "window_end": window.get("window_end"), "parameters": dict(parameters or {}), **extra}
    if window.get("counts"):
        entry["counts"] = window["counts"]
    return entry


def recent_trigger(records: Sequence[dict[str, Any]], level: str, now: datetime,
                   cooldown: timedelta = DEFAULT_COOLDOWN) -> dict[str, Any] | None:
    """The latest drift-triggered decision within ``cooldown`` before ``now`` whose level is at least
    as severe as ``level`` (it covers this episode), else None. Ingest decisions do not count, nor starts a
    ``run-failed`` record says failed."""
    failed = {record.get("target") for record in records if record.get("status") == RUN_FAILED}
    for record in reversed(records):
        if record.get("status") != "triggered" or record.get("action") not in ("retrain", "reexperiment"):
            continue
        if record.get("target") in failed:
            continue
        when = parse_time(record["at"])
        if now - cooldown <= when <= now and SEVERITY.get(record.get("level"), 0) >= SEVERITY[level]:
            return record
    return None


# --- alerts --------------------------------------------------------------------------------------

def alert(record: dict[str, Any], webhook: str | None = None) -> bool:
    """Raise an alert for a critical decision: a WARNING log line and, if a webhook URL is configured
    (argument or $MEDNER_ALERT_WEBHOOK; off by default), a JSON POST of the record. Returns whether the
    webhook accepted it; a failing webhook is logged, never raised (the trigger already happened)."""
    log.warning("ALERT drift level %s: action %s (%s) -> %s; reason: %s", record.get("level"), record.get("action"),
                record.get("flow"), record.get("target") or record.get("status"), record.get("reason"))
    webhook = webhook or os.environ.get(ALERT_WEBHOOK_ENV)
    if not webhook:
        return False
    request = urllib.request.Request(webhook, data=json.dumps(record).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return 200 <= response.status < 300
    except OSError as err:
        log.warning("alert webhook failed: %s", err)
        return False


def quality_level(f1: float, champion_f1: float, max_drop: float = DEFAULT_QUALITY_DROP) -> Level:
    """``critical`` when entity F1 on annotated live samples is more than ``max_drop`` below the
    champion's test F1 (a quality drop is treated like critical drift), else ``none``."""
    return "critical" if champion_f1 - f1 > max_drop else "none"
