"""Champion/challenger promotion and rollback for a Triton model repository served by ``medner serve``.

A challenger (an exported version) replaces the champion only when it passes four gates:

1. **export**: its lineage records the export parity gate and the INT8 quality gate as passed;
2. **quality**: its test entity F1 beats the champion's by ``margin``, or is within ``tolerance`` of it and
   the challenger is faster in-process (median of interleaved timings on the smoke notes);
3. **uat**: user acceptance: on the acceptance notes (``medner/acceptance.jsonl``: notes with the entities a
   person expects, versioned with the code and extended by review) its entity F1 reaches ``uat_min_f1``;
4. **smoke**: a throwaway Triton server (free 127.0.0.1 ports) loads the challenger's served models (``ner``,
   ``ner_int8``, CPU configs) alone and answers a fixed set of notes exactly as the same version does
   in-process, then a second one the GPU ensembles with their parts (GPU configs, the encoder on whatever provider
   the promoting machine has) where the repository holds them: a broken or unloadable model never reaches the live
   server.

Then ``serving.json``, the desired state every server follows (:mod:`medner.follow`), records the champion and
the version it replaced (for :func:`rollback`), written conditionally on S3 (a promotion that raced another
fails before any server moved), and the source runs' Metaflow tags move (``champion``). Only then does a server
move: the one at ``url``, when given, at once (:func:`medner.triton_control.switch_version`: the old version answers
until the new one is ready, a failed load goes back to it), every other within its poll period. A rollback is a
record write too. A refused challenger's folders are removed (never served, so nothing can load it by mistake;
its run still holds the model) and the champion keeps serving; every decision is recorded.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medner.config import (
    ACCEPTANCE_FILE,
    DEFAULT_PROMOTION_MARGIN,
    DEFAULT_PROMOTION_TOLERANCE,
    DEFAULT_UAT_MIN_F1,
)
from medner.promotion_gates import Gate, export_gate, quality_gate, smoke_gate, uat_gate
from medner.registry import (
    lineage,
    serving_record,
    versions,
    write_serving_record,
)
from medner.runs import all_namespaces, set_tag
from medner.s3 import fetch_versions

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

CHAMPION_TAG = "champion"

class PromotionError(RuntimeError):
    """Promotion or rollback cannot start (no such version, nothing to roll back to, no server)."""


@dataclass
class Decision:
    """What :func:`promote` decided, as recorded in ``serving.json``'s history."""

    action: str  # "promote" or "refuse"
    version: int
    champion: int | None  # the champion before the decision
    gates: list[Gate] = field(default_factory=list)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    notes: list[str] = field(default_factory=list)  # tags moved, folders removed

    @property
    def promoted(self) -> bool:
        return self.action == "promote"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def promote(repository: str | Path, url: str | None = None, key: str | None = None, *, version: int | None = None,
            margin: float = DEFAULT_PROMOTION_MARGIN, tolerance: float = DEFAULT_PROMOTION_TOLERANCE,
            gpu: bool | None = None, keep_refused: bool = False, uat_min_f1: float = DEFAULT_UAT_MIN_F1,
            acceptance: Path = ACCEPTANCE_FILE) -> Decision:
    """Gate ``version`` (default: the newest) of ``repository`` (a folder or ``s3://bucket/prefix``: its mirror,
    see :func:`medner.s3.opened`) against the recorded champion (none: the first champion, still gated); if it
    passes, record it as the champion, then switch the server at ``url`` (admin key ``key``; ``gpu``: its configs,
    None: those it runs) to it at once. Every decision is appended to ``serving.json``. Raises VersionLoadError
    when the recorded champion did not load on that server (it went back; followers retry on the next record)."""
    from medner.s3 import opened

    with opened(repository, full=False) as folder:  # the versions the gates run: fetched when needed
        decision = _decide(folder, version, margin, tolerance, keep_refused, uat_min_f1, acceptance)
    if decision.promoted and url:  # the record is written (and pushed): now the server the command talks to
        _converge(folder, url, key, decision.version, decision.champion, gpu)
    return decision


def _decide(repository: Path, version: int | None, margin: float, tolerance: float, keep_refused: bool,
            uat_min_f1: float, acceptance: Path) -> Decision:
    found = [v.version for v in versions(repository)]
    version = version if version is not None else (found[-1] if found else None)
    if version is None or version not in found:
        raise PromotionError(f"{repository} has no version {version if version is not None else ''} to promote")
    record = serving_record(repository)
    champion = record["version"]
    if version == champion:
        raise PromotionError(f"version {version} is already the champion")
    decision = Decision("refuse", version, champion)
    decision.gates.append(export_gate(lineage(repository, version)))
    if decision.gates[-1].passed:
        decision.gates.append(quality_gate(repository, version, champion, margin, tolerance))
    if decision.gates[-1].passed:
        fetch_versions(repository, [version])  # an S3 mirror gets the challenger's files: UAT and smoke run them
        decision.gates.append(uat_gate(repository, version, uat_min_f1, acceptance))
    if decision.gates[-1].passed:
        decision.gates.append(smoke_gate(repository, version))
    if all(g.passed for g in decision.gates):
        decision.action = "promote"
        record["previous"] = [v for v in record["previous"] if v != version] + ([champion] if champion else [])
        record["version"] = version
        decision.notes.append(move_champion_tag(repository, version, champion))
    elif not keep_refused and version not in record["previous"]:
        for folder in repository.glob(f"*/{version}"):
            shutil.rmtree(folder)
        decision.notes.append(f"removed the version {version} folders (its source run still holds the model)")
    record["history"].append(decision.to_dict())
    write_serving_record(repository, record)
    return decision


def _converge(folder: Path, url: str, key: str | None, version: int, previous: int | None, gpu: bool | None) -> None:
    """Switch the server at ``url`` to the version just recorded (the mirror ``folder`` has its configs)."""
    from medner.triton_control import switch_version

    if not key:
        raise PromotionError(f"no admin key to switch the server at {url}: the record is written; servers "
                             "following the registry converge by themselves")
    switch_version(url, key, folder, version, previous, gpu)


def rollback(repository: str | Path, url: str | None = None, key: str | None = None, *, to: int | None = None,
             gpu: bool | None = None) -> dict[str, Any]:
    """Record the version the champion replaced (or ``to``) as the champion again, then switch the server at
    ``url`` to it at once (the others follow the record); recorded in ``serving.json``."""
    from medner.s3 import opened

    with opened(repository, full=False) as folder:  # the server reads the version's files itself
        entry = _record_rollback(folder, to)
    if url:
        _converge(folder, url, key, entry["version"], entry["champion"], gpu)
    return entry


def _record_rollback(repository: Path, to: int | None) -> dict[str, Any]:
    record = serving_record(repository)
    current = record["version"]
    target = to if to is not None else (record["previous"][-1] if record["previous"] else None)
    if target is None:
        raise PromotionError("nothing to roll back to: no version was replaced by a promotion")
    if target == current:
        raise PromotionError(f"version {target} is already serving")
    if not (repository / "ner" / str(target)).is_dir():
        raise PromotionError(f"{repository} has no version {target}")
    entry = {"action": "rollback", "version": target, "champion": current,
             "at": datetime.now(UTC).isoformat(timespec="seconds"),
             "notes": [move_champion_tag(repository, target, current)]}
    record["previous"] = [v for v in record["previous"] if v != target]
    record["version"] = target
    record["history"].append(entry)
    write_serving_record(repository, record)
    return entry


def move_champion_tag(repository: Path, new: int, old: int | None) -> str:
    """Tag the new champion's source run ``champion`` and untag the old one's (Metaflow, best effort: the
    run may live in a datastore this process cannot reach)."""
    from metaflow.exception import MetaflowException


    try:
        moved = []
        for version, add in ((new, True), (old, False)):
            source = lineage(repository, version).get("source", "") if version is not None else ""
            if source.count("/") == 1:
                with all_namespaces():  # the source run may be another user's (a scheduler's)
                    set_tag(source, CHAMPION_TAG, add)
                moved.append(f"{'+' if add else '-'}{CHAMPION_TAG} {source}")
        return "tags: " + (", ".join(moved) or "no Metaflow source runs")
    except (MetaflowException, OSError) as err:  # a missing run or datastore must not undo a promotion that
        return f"tags not moved: {type(err).__name__}: {err}"  # already happened; a bug in this code must show
