"""The annotated-data inbox: new annotations dropped into a folder run the pipeline from ingestion.

Each new file in the inbox (``*.jsonl``, or a ``<stem>_sent`` with its ``<stem>_label`` partner) is validated
with the project's reader (:func:`medner.data.read_annotations`, errors name file and line):

* valid files move to the accepted folder (default ``<inbox>/accepted/``), which holds every annotation
  accepted so far; then DataFlow runs with ``--extra-annotations`` = all accepted files (so earlier additions
  are kept), and TrainFlow trains on that DataFlow run (``--data-run``). On the ``local`` backend both run
  here in turn; on ``stepfunctions`` DataFlow's state machine is started and the deployed TrainFlow (weekly
  ``@schedule``, default data: the latest successful DataFlow run) trains on it: chaining the execution
  would need a Step Functions waiter, deliberately left to the schedule. The accepted folder must then be
  readable by the Batch jobs (a shared file system).
* malformed files move to ``<inbox>/rejected/`` with ``<name>.error.txt`` holding the error (file and line);
  nothing is triggered for them.

Processed files are remembered in ``<inbox>/.manifest.json`` by name and content hash, so a file is never
processed twice (a corrected file with new content is). Every decision goes to the decision log.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from medner.data import DataFormatError, read_annotations
from monitoring.policy import DecisionLog, isoformat, open_log, record, utcnow
from monitoring.triggers import Backend, make_backend, start_and_record

MANIFEST = ".manifest.json"
LABEL_SUFFIX, SENT_SUFFIX = "_label", "_sent"


@dataclass
class InboxResult:
    """What one scan of the inbox did."""

    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # file name -> error (file and line)
    decisions: list[dict[str, Any]] = field(default_factory=list)


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _entries(inbox: Path) -> list[list[Path]]:
    """New-file candidates: a jsonl file alone, a ``_sent`` file with its ``_label`` partner. A ``_label``
    file waits for its ``_sent`` (and the reverse) so a half-uploaded pair is not rejected."""
    entries = []
    for path in sorted(p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.name.endswith(LABEL_SUFFIX):
            continue  # handled with its _sent file
        if path.name.endswith(SENT_SUFFIX):
            partner = path.with_name(path.name[: -len(SENT_SUFFIX)] + LABEL_SUFFIX)
            if partner.exists():
                entries.append([path, partner])
            continue
        entries.append([path])
    return entries


def _load_manifest(inbox: Path) -> dict[str, Any]:
    path = inbox / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def _save_manifest(inbox: Path, manifest: dict[str, Any]) -> None:
    tmp = inbox / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(inbox / MANIFEST)  # atomic: a crash never leaves half a manifest


def process_inbox(inbox: str | Path, backend: str | Backend = "local", log: str | Path | DecisionLog | None = None,
                  *, accepted_dir: str | Path | None = None, data_parameters: Mapping[str, Any] | None = None,
                  train_parameters: Mapping[str, Any] | None = None, now: datetime | None = None,
                  backend_options: Mapping[str, Any] | None = None) -> InboxResult:
    """Validate the inbox's new files, file them as accepted or rejected, and trigger the pipeline once
    for all newly accepted files (DataFlow, then TrainFlow on the local backend)."""

    inbox = Path(inbox)
    if not inbox.is_dir():
        raise FileNotFoundError(f"inbox {inbox} is not a folder")
    accepted_dir = Path(accepted_dir) if accepted_dir else inbox / "accepted"
    rejected_dir = inbox / "rejected"
    log = open_log(log)
    backend = make_backend(backend, **dict(backend_options or {}))
    now = now or utcnow()
    manifest = _load_manifest(inbox)
    result = InboxResult()

    for files in _entries(inbox):
        name, digest = files[0].name, _digest(files)
        if manifest.get(name, {}).get("sha256") == digest:
            continue  # the same content was processed before
        try:
            sentences = read_annotations(files[0])
        except DataFormatError as err:
            rejected_dir.mkdir(parents=True, exist_ok=True)
            for path in files:
                shutil.move(str(path), rejected_dir / path.name)
            (rejected_dir / f"{name}.error.txt").write_text(f"{err}\n", encoding="utf-8")
            result.rejected[name] = str(err)
            manifest[name] = {"sha256": digest, "status": "rejected", "at": isoformat(now), "error": str(err)}
            entry = record("none", "ingest", backend.name, f"rejected: {err}", status="rejected", flow="DataFlow",
                           now=now, file=name)
        else:
            accepted_dir.mkdir(parents=True, exist_ok=True)
            for path in files:
                shutil.move(str(path), accepted_dir / path.name)
            result.accepted.append(name)
            manifest[name] = {"sha256": digest, "status": "accepted", "at": isoformat(now),
                              "sentences": len(sentences)}
            entry = record("none", "ingest", backend.name, f"accepted {len(sentences)} sentences", status="accepted",
                           flow="DataFlow", now=now, file=name, sentences=len(sentences))
        log.append(entry)
        result.decisions.append(entry)
        _save_manifest(inbox, manifest)

    if result.accepted:
        result.decisions += _ingest(accepted_dir, result.accepted, backend, log, data_parameters, train_parameters,
                                    now)
    return result


def accepted_files(accepted_dir: Path) -> list[Path]:
    """Every accepted annotation file (the jsonl files and the ``_sent`` halves of pairs), sorted."""
    return sorted(p for p in accepted_dir.iterdir()
                  if p.is_file() and (p.suffix == ".jsonl" or p.name.endswith(SENT_SUFFIX)))


def _ingest(accepted_dir: Path, new: list[str], backend: Backend, log: DecisionLog,
            data_parameters: Mapping[str, Any] | None, train_parameters: Mapping[str, Any] | None,
            now: datetime) -> list[dict[str, Any]]:
    """DataFlow over the corpus plus every accepted file, then (local backend) TrainFlow on that run."""
    extra = ",".join(str(p.resolve()) for p in accepted_files(accepted_dir))
    reason = f"new annotated data: {', '.join(new)}"
    data = start_and_record("DataFlow", {**dict(data_parameters or {}), "extra-annotations": extra}, backend, log,
                            level="none", action="ingest", reason=reason, now=now, files=new)
    decisions = [data]
    if backend.name == "local" and data["status"] == "triggered":
        decisions.append(start_and_record(
            "TrainFlow", {**dict(train_parameters or {}), "data-run": data["target"]}, backend, log, level="none",
            action="retrain", reason=f"{reason}; trains on {data['target']}", now=now, files=new))
    return decisions
