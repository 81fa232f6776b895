"""The gates a challenger passes before it serves (:func:`medner.promotion.promote` runs them in order): export
(its lineage's gates), quality (test F1 against the champion's, ties settled by speed), uat (the acceptance notes)
and smoke (a throwaway server answers fixed notes as the version does in-process)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medner.config import ACCEPTANCE_FILE, SERVED_MODELS
from medner.data import Sentence, read_jsonl
from medner.registry import lineage
from medner.s3 import fetch_versions
from medner.spans import predicted_labels

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

# The smoke test's fixed notes (synthetic, no patient data): sentences, a multi-line note, non-Latin text,
# a one-character note and a long note of many windows.
SMOKE_NOTES = [
    "Patients with breast cancer were treated with tamoxifen and radiotherapy.",
    "Inhaled steroids reduced asthma exacerbations in children.",
    "Type 2 diabetes was managed with metformin; hypertension with beta blockers.",
    "Follow-up:\nchronic kidney disease, stage 3.\n\nStarted ACE inhibitors (lisinopril 10 mg).",
    "Ωmega-3 für Diabetes — 😀 ok. 患者 has hepatitis C.",
    "x",
    " ".join(["Chemotherapy improved survival in metastatic colorectal cancer."] * 60),
]



@dataclass
class Gate:
    name: str
    passed: bool
    detail: str


def export_gate(record: dict[str, Any]) -> Gate:
    """The challenger's export gates (parity; INT8 quality) as its lineage records them."""
    gates = record.get("gates", {})
    failed = [name for name in ("parity", "int8_quality") if not gates.get(name, {}).get("passed")]
    if failed:
        return Gate("export", False, f"lineage has no passed {' / '.join(failed)} gate")
    parity = gates["parity"]
    return Gate("export", True, f"parity max |logit diff| {parity.get('max_abs_logit_diff', float('nan')):.1e}, "
                                f"INT8 F1 drop {gates['int8_quality'].get('drop', float('nan')):+.4f}")


def in_process_seconds(repository: Path, version: int, rounds: int = 5) -> list[float]:
    """Seconds to tag the smoke notes in-process (1 thread), ``rounds`` times, after a warm-up."""
    from clients.local import LocalNerModel

    model = LocalNerModel(repository, "ner", threads=1, version=version)
    model.extract(SMOKE_NOTES)
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.extract(SMOKE_NOTES)
        timings.append(time.perf_counter() - start)
    return timings


def quality_gate(repository: Path, challenger: int, champion: int | None, margin: float, tolerance: float) -> Gate:
    """Test entity F1 against the champion's: better by ``margin``, or a tie within ``tolerance`` and faster."""
    f1 = (lineage(repository, challenger).get("metrics_fp32") or {}).get("entity_f1")
    if f1 is None:
        return Gate("quality", False, f"version {challenger} has no test entity F1 in its lineage")
    if champion is None:
        return Gate("quality", True, f"test entity F1 {f1:.4f}; no champion to beat")
    champion_record = lineage(repository, champion)
    best = (champion_record.get("metrics_fp32") or {}).get("entity_f1", 0.0)
    same_data = champion_record.get("data_version") == lineage(repository, challenger).get("data_version")
    versus = f"test entity F1 {f1:.4f} vs champion v{champion} {best:.4f}" + ("" if same_data else
                                                                             " (different data versions)")
    if f1 >= best + margin and f1 - best > tolerance:
        return Gate("quality", True, f"{versus}: better by more than the margin {margin:.4f}")
    if abs(f1 - best) <= tolerance:
        fetch_versions(repository, [challenger, champion])  # both run in-process (S3 mirror: their files)
        ours, theirs = [], []
        for _ in range(3):  # interleaved: this machine's speed drifts
            ours += in_process_seconds(repository, challenger, 2)
            theirs += in_process_seconds(repository, champion, 2)
        ms_ours, ms_theirs = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
        faster = ms_ours < ms_theirs
        verdict = "faster" if faster else "not faster"
        return Gate("quality", faster, f"{versus}: a tie within {tolerance:.4f}; in-process {ms_ours:.1f} vs "
                                       f"{ms_theirs:.1f} ms for the smoke notes ({verdict})")
    return Gate("quality", False, f"{versus}: not better by the margin {margin:.4f}")


def acceptance_scores(repository: Path, version: int, notes: Sequence[Sentence], model: str = "ner"
                      ) -> dict[str, Any]:
    """``version`` of ``model`` (in-process) on the acceptance ``notes`` (``medner.data.read_jsonl`` of the file):
    the entity metrics, how many notes it got exactly right, and how many notes there are. Raises what loading or
    running the model raises."""
    from clients.local import LocalNerModel
    from medner.metrics import evaluate

    predictions = predicted_labels([n.tokens for n in notes],
                                   LocalNerModel(repository, model, threads=1, version=version).extract)
    exact = sum(list(n.labels) == list(p) for n, p in zip(notes, predictions))
    return {**evaluate([n.labels for n in notes], predictions), "notes": len(notes), "exactly_right": exact}


def uat_gate(repository: Path, version: int, min_f1: float, acceptance: Path = ACCEPTANCE_FILE) -> Gate:
    """User acceptance: ``version`` (fp32, in-process) on the acceptance notes must reach entity F1 ``min_f1``;
    the detail says how many notes it got exactly right (never their text)."""

    notes = read_jsonl(acceptance)  # a malformed file is an error naming its line, not a refused model
    try:
        scores = acceptance_scores(repository, version, notes)
    except (RuntimeError, OSError, ValueError) as err:  # onnxruntime's load errors are RuntimeErrors
        return Gate("uat", False, f"v{version} does not run in-process ({type(err).__name__})")
    f1, exact = scores["entity_f1"], scores["exactly_right"]
    return Gate("uat", f1 >= min_f1, f"entity F1 {f1:.4f} on {len(notes)} acceptance notes of {acceptance.name} "
                                     f"({exact} exactly right); {min_f1:.4f} needed")


def smoke_gate(repository: Path, version: int, timeout: float = 180.0) -> Gate:
    """Serve ``version`` alone on a throwaway Triton server and compare its answers on the smoke notes with
    the same version run in-process (labels and offsets; scores within 1e-3): with the CPU configs, then, where
    the repository holds the GPU ensemble's parts, with the GPU configs (:func:`stage_version`)."""
    from clients.local import LocalNerModel
    from clients.ner_client import NerClient
    from medner.triton import TritonError, TritonServer

    expected: dict[str, list] = {}  # model -> its in-process answers, the same for both configs
    checked = []
    for gpu in (False, True):
        configs = "GPU configs" if gpu else "CPU configs"
        with tempfile.TemporaryDirectory(prefix="medner-smoke-") as tmp:
            staging, log = Path(tmp) / "repository", Path(tmp) / "server.log"
            served = stage_version(repository, version, staging, gpu)
            if not served:
                continue
            try:
                with TritonServer.on_free_ports(staging, log_file=log, gpu=gpu) as server:
                    for model in served:
                        with NerClient(server.grpc_url, model=model, timeout=timeout) as client:
                            answers = client.extract(SMOKE_NOTES, return_exceptions=True)
                        if model not in expected:
                            expected[model] = LocalNerModel(repository, model, threads=1,
                                                            version=version).extract(SMOKE_NOTES)
                        for index, (got, want) in enumerate(zip(answers, expected[model])):
                            if isinstance(got, Exception):
                                return Gate("smoke", False, f"{model} v{version} ({configs}): smoke note {index} "
                                                            f"failed: {got}")
                            if not _same_entities(got, want):
                                return Gate("smoke", False, f"{model} v{version} ({configs}): smoke note {index} "
                                                            "answered differently through Triton than in-process")
            except TritonError as err:
                return Gate("smoke", False, f"v{version} does not load in Triton with its {configs} "
                                            f"({type(err).__name__}): {_load_failure(log)}")
            checked.append(configs)
    return Gate("smoke", True, f"{', '.join(expected)} v{version} answered {len(SMOKE_NOTES)} notes through Triton "
                               f"as in-process ({' and '.join(checked)})")


def stage_version(repository: Path, version: int, staging: Path, gpu: bool) -> list[str]:
    """Stage ``version`` of the served models alone in ``staging`` (their configs, the version as a link) for a
    throwaway server; returns the served models staged. CPU configs: each served model is whole (tokenize +
    encode + decode). GPU configs (``gpu``): the ensembles with their parts, each at one instance, the encoder
    allowed onto the CPU provider (``require_gpu`` false): the GPU path's configs, wiring and code on whatever this
    machine has (a server on a GPU node checks its provider when it loads); none when a part lacks the version
    (a repository of the served models alone)."""
    from google.protobuf import text_format

    from medner.triton_control import model_config_file, read_model_config

    served = [m for m in SERVED_MODELS if (repository / m / str(version)).is_dir()]
    configs = {m: read_model_config(model_config_file(repository / m, gpu)) for m in served}
    if gpu:
        parts = {step.model_name for c in configs.values() for step in c.ensemble_scheduling.step}
        if not all((repository / part / str(version)).is_dir() for part in parts):
            return []
        configs |= {part: read_model_config(model_config_file(repository / part, gpu)) for part in sorted(parts)}
    for model, config in configs.items():
        for group in config.instance_group:
            group.count = 1  # a check of configs and code, not of throughput
        if gpu and "device" in config.parameters and config.parameters["device"].string_value == "gpu":
            config.parameters["require_gpu"].string_value = "false"
        target = staging / model / ("configs/gpu.pbtxt" if gpu else "config.pbtxt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text_format.MessageToString(config))
        if gpu:
            shutil.copy2(repository / model / "config.pbtxt", staging / model / "config.pbtxt")
        (staging / model / str(version)).symlink_to((repository / model / str(version)).resolve())
    return served


def _same_entities(got: list[dict], want: list[dict]) -> bool:
    key = lambda e: (e["label"], e["start"], e["end"])  # noqa: E731
    return [key(e) for e in got] == [key(e) for e in want] and all(
        abs(a["score"] - b["score"]) <= 1e-3 for a, b in zip(got, want))


def _load_failure(log: Path) -> str:
    """The server log's first line saying why a model failed to load (the log holds no note text)."""
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if "failed to load" in line or "Invalid argument" in line:
                return line.strip()[:400]
    return "see the server log"
