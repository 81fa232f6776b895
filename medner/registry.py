"""The model registry: the numbered versions of a Triton model repository, each with the lineage that
export wrote (``ner_encoder/N/lineage.json``: source run, data version, code version, metrics, gates), which
version is the champion (``serving.json``, written by promotion and rollback), and which of them a running
server has loaded."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medner.config import SERVED_MODELS, grpc_tls

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

SERVING_FILE = "serving.json"  # the champion version, the ones it replaced, and every promotion decision
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
    return [ModelVersion(number, sorted(found[number]), lineage(repository, number)) for number in sorted(found)]


def serving_record(repository: Path) -> dict[str, Any]:
    """``serving.json``: ``{"version": champion or None, "previous": [versions it replaced, newest last],
    "history": [decisions]}``; empty (no champion yet) before the first promotion."""
    path = repository / SERVING_FILE
    record = json.loads(path.read_text()) if path.exists() else {}
    return {"version": record.get("version"), "previous": record.get("previous", []),
            "history": record.get("history", [])}


def write_serving_record(repository: Path, record: dict[str, Any]) -> None:
    """Replace ``serving.json`` atomically (a reader never sees half a file)."""
    path = repository / SERVING_FILE
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(record, indent=2) + "\n")
    staging.replace(path)


def champion(repository: Path) -> int | None:
    """The version that should serve: the promoted champion, else (never promoted) the newest version."""
    record = serving_record(repository)
    if record["version"] is not None:
        return int(record["version"])
    found = versions(repository)
    return found[-1].version if found else None


class NoChampion(LookupError):
    """The repository has no recorded champion: a server does not guess one."""


def serving_folder(location: str | Path) -> tuple[Path, int, str]:
    """What ``medner serve`` starts Triton with: the repository's folder (an S3 repository's metadata mirror:
    configs, lineage and a folder per version), its recorded champion, and the ``--model-repository`` Triton
    reads (the folder, or the bucket itself: :func:`medner.s3.triton_location`). Read only: a server never
    writes the registry. Raises NoChampion before the first promotion (the newest version is not served
    ungated)."""
    from medner.s3 import is_s3, opened, triton_location

    with opened(location, full=False, read_only=True) as folder:
        version = serving_record(folder)["version"]
        if version is None:
            newest = versions(folder)
            raise NoChampion(f"{location} has no champion recorded in {SERVING_FILE}: promote one (gated) with "
                             f"`medner models promote {newest[-1].version if newest else 'VERSION'} --repository "
                             f"{location}`")
    return folder, int(version), triton_location(str(location)) if is_s3(location) else str(folder.resolve())


def lineage(repository: Path, version: int) -> dict[str, Any]:
    """The lineage export wrote for ``version`` ({} when it has none)."""
    path = repository / LINEAGE_MODEL / str(version) / "lineage.json"
    return json.loads(path.read_text()) if path.exists() else {}


def describe(found: list[ModelVersion], loaded: dict[str, list[int]] | None, champion_version: int | None = None
             ) -> list[dict[str, Any]]:
    """One summary row per version, newest first. ``serving``: the served models that ``loaded`` (from
    :func:`loaded_versions`) has at that version; without a server, "champion" marks ``champion_version``."""
    rows = []
    for entry in reversed(found):
        if loaded is None:
            state = "champion" if entry.version == champion_version else ""
        else:
            state = ",".join(m for m in entry.models if entry.version in loaded.get(m, [])) or "not loaded"
        record = entry.lineage
        rows.append({
            "version": entry.version, "models": entry.models, "serving": state,
            "exported_at": record.get("exported_at"), "source": record.get("source"),
            "data_version": record.get("data_version"), "code_version": record.get("code_version"),
            "entity_f1_fp32": (record.get("metrics_fp32") or {}).get("entity_f1"),
            "entity_f1_int8": (record.get("metrics_int8") or {}).get("entity_f1"),
            "gates": {name: gate.get("passed") for name, gate in record.get("gates", {}).items()},
        })
    return rows


def version_rows(location: str | Path, url: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """:func:`describe` rows of every version in the repository at ``location`` (a folder or
    ``s3://bucket/prefix``), newest first, marked with what the server at ``url`` has loaded, else with the
    recorded champion; and a warning when that server cannot be read (the repository is still listed). Raises
    FileNotFoundError when the repository has no version."""
    from medner.s3 import opened
    from medner.triton_control import admin_key

    with opened(location, full=False) as repository:
        found, recorded = versions(repository), champion(repository)
    if not found:
        raise FileNotFoundError(f"{location}: no model versions (run `medner export`)")
    loaded, warning = None, None
    if url:
        try:
            loaded = loaded_versions(url, admin_key(create=False))
        except Exception as err:  # unreachable server: still list the repository
            warning = f"cannot read what {url} serves: {err}"
    return describe(found, loaded, recorded), warning


def loaded_versions(url: str, admin_key: str | None = None, timeout: float = 10.0) -> dict[str, list[int]]:
    """The READY versions of each served model on the Triton server at ``url`` (gRPC); the repository
    index is an administrative endpoint where the server was started by ``medner serve``."""
    import tritonclient.grpc as grpcclient

    from medner.triton_control import GRPC_ADMIN_HEADER

    client = grpcclient.InferenceServerClient(url, **grpc_tls())
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
