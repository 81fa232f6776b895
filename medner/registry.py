"""The model registry: the numbered versions of a Triton model repository, each with the lineage that
export wrote (``ner_encoder/N/lineage.json``: source run, data version, code version, metrics, gates), and
which of them a running server has loaded."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVED_MODELS = ("ner", "ner_int8")  # what clients call; every other model is a part of these
LINEAGE_MODEL = "ner_encoder"  # whose version folders hold lineage.json


@dataclass
class ModelVersion:
    version: int
    models: list[str]  # served models that have this version (no ner_int8 when the INT8 gate failed)
    lineage: dict[str, Any] = field(default_factory=dict)


def versions(repository: Path) -> list[ModelVersion]:
    """Every version of the served models in ``repository``, oldest first."""
    found: dict[int, list[str]] = {}
    for model in SERVED_MODELS:
        for folder in (repository / model).glob("[0-9]*"):
            if folder.is_dir() and folder.name.isdigit():
                found.setdefault(int(folder.name), []).append(model)
    result = []
    for number in sorted(found):
        lineage_file = repository / LINEAGE_MODEL / str(number) / "lineage.json"
        lineage = json.loads(lineage_file.read_text()) if lineage_file.exists() else {}
        result.append(ModelVersion(number, sorted(found[number]), lineage))
    return result


def describe(found: list[ModelVersion], loaded: dict[str, list[int]] | None) -> list[dict[str, Any]]:
    """One summary row per version, newest first. ``serving``: the served models that ``loaded`` (from
    :func:`serving`) has at that version; without a server, "latest" marks what Triton's default
    version policy would load."""
    rows = []
    for entry in reversed(found):
        if loaded is None:
            state = "latest" if entry is found[-1] else ""
        else:
            state = ",".join(m for m in entry.models if entry.version in loaded.get(m, [])) or "not loaded"
        lineage = entry.lineage
        rows.append({
            "version": entry.version, "models": entry.models, "serving": state,
            "exported_at": lineage.get("exported_at"), "source": lineage.get("source"),
            "data_version": lineage.get("data_version"), "code_version": lineage.get("code_version"),
            "entity_f1_fp32": (lineage.get("metrics_fp32") or {}).get("entity_f1"),
            "entity_f1_int8": (lineage.get("metrics_int8") or {}).get("entity_f1"),
            "gates": {name: gate.get("passed") for name, gate in lineage.get("gates", {}).items()},
        })
    return rows


def serving(url: str, admin_key: str | None = None, timeout: float = 10.0) -> dict[str, list[int]]:
    """The READY versions of each served model on the Triton server at ``url`` (gRPC); the repository
    index is an administrative endpoint where the server was started by ``medner serve``."""
    import tritonclient.grpc as grpcclient

    from medner.triton import GRPC_ADMIN_HEADER

    client = grpcclient.InferenceServerClient(url)
    headers = {GRPC_ADMIN_HEADER: admin_key} if admin_key else None
    try:
        index = client.get_model_repository_index(headers=headers, as_json=True, client_timeout=timeout
                                                  ).get("models", [])
    finally:
        client.close()
    ready: dict[str, list[int]] = {}
    for entry in index:
        if entry.get("name") in SERVED_MODELS and entry.get("state") == "READY" and entry.get("version"):
            ready.setdefault(entry["name"], []).append(int(entry["version"]))
    return {name: sorted(numbers) for name, numbers in ready.items()}


def code_version(root: Path | None = None) -> str:
    """The git commit of the project (``-dirty`` with uncommitted changes), else the package version."""
    from importlib.metadata import PackageNotFoundError, version

    root = root or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return f"medner {version('medner')}"
        except PackageNotFoundError:
            return "unknown"
