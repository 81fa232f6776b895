"""What every benchmark shares: the machine it ran on, the notes it sends, latency percentiles, server memory."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def gpus() -> list[str]:
    """The GPUs ``nvidia-smi`` lists on this machine (none: no driver, no tool, or no GPU)."""
    if not shutil.which("nvidia-smi"):
        return []
    query = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                           text=True, check=False)
    return [line.strip() for line in query.stdout.splitlines() if line.strip()]


def hardware_info() -> dict:
    """This machine as detected now: CPU model, core count, GPUs."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus()}


def hardware(info: dict | None = None) -> str:
    """``CPU, N cores, GPUs``: the line every results file names its machine with."""
    info = info or hardware_info()
    return f"{info['cpu']}, {info['cores']} cores, " + (", ".join(info["gpus"]) if info["gpus"] else "no GPU")


def percentiles(latencies: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds of latencies in seconds."""
    ms = np.asarray(latencies) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def load_notes(data_dir: str | Path | None = None, limit: int = 0) -> list[str]:
    """The BeHealthy test split's sentences as notes (tokens joined with spaces); the first ``limit`` (0: all)."""
    from medner.config import data_dir as resolve
    from medner.data import read_behealthy
    from medner.spans import join_tokens

    test = read_behealthy(resolve(data_dir))["test"]
    return [join_tokens(s.tokens)[0] for s in test[: limit or None]]


def latest_version(model_dir: Path) -> Path:
    """The highest-numbered version folder of a model in a Triton repository."""
    return max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def one_model_repository(repository: Path, target: Path, code: Path, model: str = "ner") -> Path:
    """``target``: a Triton repository holding only ``model``, the newest version of ``repository`` (its files
    linked) as version 1, with the config.pbtxt and model.py of the checkout ``code``: the same model files run
    with that checkout's code."""
    version = latest_version(repository / model)
    (target / model / "1").mkdir(parents=True)
    shutil.copy2(code / "model_repository" / model / "config.pbtxt", target / model / "config.pbtxt")
    for item in version.iterdir():
        if item.is_file() and item.name != "model.py":
            (target / model / "1" / item.name).symlink_to(item.resolve())
    from export.onnx_export import MODEL_CODE  # whose model.py each python model runs (ner_int8: ner's)

    shutil.copy2(code / "model_repository" / MODEL_CODE[model] / "model.py", target / model / "1" / "model.py")
    return target


def repository_option(repository: Path | str) -> str:
    """`` --repository PATH`` for a command line that reproduces a run, or nothing for the project's own."""
    default = Path(__file__).resolve().parents[1] / "model_repository"
    return "" if Path(repository).resolve() == default else f" --repository {repository}"


def out_option(out: Path | str, default: Path, flag: str = "--out") -> str:
    """`` --out PATH`` (or another ``flag``'s) for a command line that reproduces a run, or nothing where it used
    ``default``."""
    return "" if Path(out).resolve() == Path(default).resolve() else f" {flag} {out}"


def chunks(items: list, size: int) -> list[list]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def process_rss_mb(pid: int | None) -> float | None:
    """Resident memory (MB) of a process and all its children (tritonserver and its python stubs)."""
    import psutil

    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def write_results(out: Path, lines: Sequence[str], data: object = None) -> None:
    """A benchmark's results: ``out``.md (the lines), ``out``.json (``data``, when given), and the lines printed."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
