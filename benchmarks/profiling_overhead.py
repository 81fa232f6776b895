"""What request profiling costs: throughput with profiling off and on, interleaved round by round.

    python benchmarks/profiling_overhead.py [--rounds 5] [--triton] [--gpu-ensemble] [--concurrency 16]

In-process (the CPU ``ner`` model's code, one ONNX Runtime thread, micro-batches of 64 notes):
  off  ``NerPipeline(notes)``
  on   ``FeatureTagger(pipeline)(notes)`` + ``RollingProfiler.log``, and the profiler's fold of the round's
       rows into whylogs (``flush``) inside the timed section: an upper bound, since in serving the fold runs
       on the profiler's background thread between requests.
  off_again  ``off`` once more: the loss of an identical variant is the noise floor
  The three rotate batch by batch; ``components`` times the profiling parts alone (CPU us per note).
With ``--triton``: two tritonservers on the same model version (a copy of the repository with the current
``model_repository/ner/model.py``), profiling off and on (``MEDNER_PROFILE_DIR``), the same notes at
``--concurrency`` requests of 8 notes in flight, rotating between the servers round by round; a third
server runs the python stub on the system libpython (how medner.triton ran it before it put this Python's
libpython first, which the stub needs to import ``ssl`` for whylogs and boto3).
With ``--gpu-ensemble``: the GPU configs (``medner serve --gpu``'s ensembles) on this CPU, whose decoders profile
from the tokenizer's windows routed to them beside the logits: the same configs without that routing (as before),
with it and profiling off (what the routing costs the hot path), and with profiling on, rotating likewise
(``--repository`` must hold a version exported with this checkout: the decoders' monitoring files).

Notes are the BeHealthy test sentences. Ratios are taken within each round, then the median over rounds.
Writes benchmarks/results/profiling_overhead.json (``--out``): hardware, date, the ``ner`` version measured,
the machine's load average at start and end, ``in_process`` and ``triton_cN`` (notes/s per round and the median
loss of ``on`` and ``off_again`` against ``off``), ``components`` (CPU us per note of the pipeline, the features with
and without the accuracy-estimate columns, the whylogs fold, and profiling's share), ``gpu_ensemble_cN`` (notes/s
per round and the median loss of each variant against ``before``), and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import chunks, hardware, latest_version, load_notes, one_model_repository  # noqa: E402


def served_copy(repository: Path, work: Path, data_dir: str | None) -> Path:
    """A one-model repository (:func:`benchmarks.common.one_model_repository`) with this checkout's code, and a
    training vocabulary (from the corpus' train split) when the version was exported without one."""
    from medner.config import data_dir as resolve
    from medner.data import read_behealthy
    from monitoring.vocabulary import VOCABULARY_FILE, write_vocabulary

    copy = one_model_repository(repository, work / "repository", ROOT)
    if not (copy / "ner" / "1" / VOCABULARY_FILE).exists():
        write_vocabulary((s.tokens for s in read_behealthy(resolve(data_dir))["train"]), copy / "ner" / "1")
    return copy


def in_process(repository: Path, notes: list[str], rounds: int, profiles: Path) -> dict:
    from medner.inference import NerPipeline
    from medner.triton_control import config_parameters
    from monitoring.features import FeatureTagger
    from monitoring.profiles import RollingProfiler

    pipeline = NerPipeline(latest_version(repository / "ner"), config_parameters(repository / "ner/config.pbtxt"), 1)
    tag_with_features = FeatureTagger(pipeline)
    profiler = RollingProfiler(profiles, "ner", window_seconds=60)
    batches = chunks(notes, 64)

    def on(batch: list[str]) -> list:
        decoded, rows = tag_with_features(batch)
        profiler.log(rows)
        return [d.entities for d in decoded]

    variants = {"off": pipeline, "off_again": pipeline, "on": on}  # off twice: the A/A noise floor
    assert [pipeline(b) for b in batches] == [on(b) for b in batches], "profiling changed the entities"  # warm-up
    profiler.flush()
    # Interleaved batch by batch, the order rotating, so load from other processes hits every variant alike;
    # wall and process CPU time (every thread of this process, the profiler's included) summed per round
    results: dict[str, list[float]] = {f"{n}{s}": [] for n in variants for s in ("", "_cpu")}
    names = list(variants)
    for _ in range(rounds):
        wall, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
        for k, batch in enumerate(batches):
            for name in names[k % 3:] + names[: k % 3]:
                started, cpu_started = time.perf_counter(), time.process_time()
                variants[name](batch)
                wall[name] += time.perf_counter() - started
                cpu[name] += time.process_time() - cpu_started
        started, cpu_started = time.perf_counter(), time.process_time()
        profiler.flush()  # the round's whylogs fold (else on the background thread), charged to "on"
        wall["on"] += time.perf_counter() - started
        cpu["on"] += time.process_time() - cpu_started
        for name in names:
            results[name].append(len(notes) / wall[name])
            results[f"{name}_cpu"].append(len(notes) / cpu[name])
    profiler.close()
    return results


def components(repository: Path, notes: list[str], profiles: Path) -> dict:
    """CPU microseconds per note of the profiling parts alone, against the whole pipeline."""
    from medner.inference import NerPipeline, extract_decoded
    from medner.triton_control import config_parameters
    from monitoring.estimation import Estimator
    from monitoring.features import batch_features
    from monitoring.profiles import RollingProfiler
    from monitoring.vocabulary import read_vocabulary

    version = latest_version(repository / "ner")
    pipeline = NerPipeline(version, config_parameters(repository / "ner/config.pbtxt"), 1)
    vocabulary, batches = read_vocabulary(version), chunks(notes, 64)
    cpu = time.process_time()
    decoded = [extract_decoded(b, pipeline.tokenizer, pipeline.encode, pipeline.max_length, pipeline.stride,
                               pipeline.micro_batch, pipeline.decoder) for b in batches]
    pipeline_us = 1e6 * (time.process_time() - cpu) / len(notes)
    estimator = Estimator.load(version)
    spent = {False: 0.0, True: 0.0}  # CPU s of the features without and with the accuracy-estimate columns
    for _ in range(5):  # alternating, so both see the same machine
        for estimate in (False, True):
            cpu = time.process_time()
            rows = [batch_features(b, batch, [d.labels for d in dec], [d.confidence for d in dec],
                                   pipeline.tokenizer.unk_token_id, vocabulary, estimator if estimate else None)
                    for b, (batch, dec) in zip(batches, decoded)]
            spent[estimate] += time.process_time() - cpu
    features_us = 1e6 * spent[True] / (5 * len(notes))
    profiler = RollingProfiler(profiles, "ner", 60, background=False)
    cpu = time.process_time()
    for _ in range(5):
        for r in rows:
            profiler.log(r)
        profiler.flush()
    profile_us = 1e6 * (time.process_time() - cpu) / (5 * len(notes))
    profiler.close()
    return {"pipeline_cpu_us_per_note": round(pipeline_us, 1), "features_cpu_us_per_note": round(features_us, 1),
            "estimator": estimator is not None,
            "features_without_estimate_cpu_us_per_note": round(1e6 * spent[False] / (5 * len(notes)), 1),
            "whylogs_fold_cpu_us_per_note": round(profile_us, 1),
            "profiling_share_pct": round(100 * (features_us + profile_us) / pipeline_us, 2)}


def triton(repository: Path, notes: list[str], rounds: int, concurrency: int, work: Path) -> dict:
    from medner.triton import TritonServer

    copy = repository
    class SystemLibpython(TritonServer):
        """The stub on the system libpython, as before medner.triton put this Python's first."""

        def environment(self) -> dict[str, str]:
            env = super().environment()
            libdir = sysconfig.get_config_var("LIBDIR")
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in env["LD_LIBRARY_PATH"].split(os.pathsep)
                                                     if p != libdir)
            return env

    servers = {}
    for name, kind, profile_dir in (("off", TritonServer, None), ("on", TritonServer, str(work / "profiles")),
                                    ("off_system_libpython", SystemLibpython, None)):
        servers[name] = kind.on_free_ports(copy, log_file=work / f"{name}.log", profile_dir=profile_dir,
                                           profile_window_seconds=60).start()
    variants = {"off": "off", "off_again": "off", "on": "on", "off_system_libpython": "off_system_libpython"}
    return rotated(servers, variants, notes, rounds, concurrency, work / "profiles")


def rotated(servers: dict, variants: dict[str, str], notes: list[str], rounds: int, concurrency: int,
            profiles: Path) -> dict[str, list[float]]:
    """notes/s of each variant (name -> the server it calls) at ``concurrency`` requests of 8 notes, after a
    warm-up, the order rotating round by round; stops the servers; the profiling one must have written to
    ``profiles``."""
    from benchmarks.serving import bench_triton

    try:
        for server in servers.values():  # warm-up
            bench_triton(server.grpc_url, "ner", notes[:256], concurrency, 8)
        results: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                url = servers[variants[name]].grpc_url
                results[name].append(bench_triton(url, "ner", notes, concurrency, 8)["notes_per_s"])
    finally:
        for server in servers.values():
            server.stop()
    assert list(profiles.rglob("*.bin")), "the profiling server wrote no profile"
    return results


WINDOWS = ("input_ids", "attention_mask")  # what the GPU ensemble's decoders get for their profile rows


def without_windows(staging: Path) -> None:
    """The staged GPU configs as they were before the decoders profiled: no windows into the decoders."""
    from google.protobuf import text_format

    from medner.triton_control import read_model_config

    for config_file in staging.glob("*/configs/gpu.pbtxt"):
        config = read_model_config(config_file)
        for step in config.ensemble_scheduling.step:
            for name in WINDOWS:
                if step.model_name.startswith("ner_decode") and name in step.input_map:
                    del step.input_map[name]
        if config.name.startswith("ner_decode"):
            kept = [tensor for tensor in config.input if tensor.name not in WINDOWS]
            del config.input[:]
            config.input.extend(kept)
        config_file.write_text(text_format.MessageToString(config))


def gpu_ensemble(repository: Path, notes: list[str], rounds: int, concurrency: int, work: Path) -> dict:
    """The GPU configs on this machine's CPU (``medner.promotion_gates.stage_version``, as promotion's smoke test
    serves them): ``before``, the decoders without the tokenizer's windows; ``before_again`` (noise); ``windows``,
    today's configs, profiling off (what routing the windows costs the hot path); ``windows_on``, profiling on."""
    from medner.promotion_gates import stage_version
    from medner.triton import TritonServer

    version = int(latest_version(repository / "ner").name)
    servers = {}
    for name, profile_dir in (("before", None), ("windows", None), ("windows_on", str(work / "gpu-profiles"))):
        if not stage_version(repository, version, work / name, gpu=True):
            sys.exit(f"{repository} v{version} lacks the GPU ensemble's parts: export it with this checkout")
        if name == "before":
            without_windows(work / name)
        servers[name] = TritonServer.on_free_ports(work / name, gpu=True, log_file=work / f"{name}.log",
                                                   profile_dir=profile_dir, profile_window_seconds=60).start()
    variants = {"before": "before", "before_again": "before", "windows": "windows", "windows_on": "windows_on"}
    return rotated(servers, variants, notes, rounds, concurrency, work / "gpu-profiles")


def summary(results: dict[str, list[float]], baseline: str = "off") -> dict:
    """Throughput per round and the median loss of every other variant (``off_again``: noise) against
    ``baseline``."""
    out = {}
    others = [name for name in results if not name.endswith("_cpu") and name != baseline]
    for suffix, unit in (("", "notes_per_s"), ("_cpu", "notes_per_cpu_s")):
        off = results.get(f"{baseline}{suffix}")
        if not off:
            continue
        out[f"{unit}_{baseline}"] = [round(x, 1) for x in off]
        for other in others:
            if results.get(f"{other}{suffix}"):
                values = results[f"{other}{suffix}"]
                loss = [1 - b / a for a, b in zip(off, values)]
                out[f"{unit}_{other}"] = [round(x, 1) for x in values]
                out[f"{unit}_{other}_median_loss_pct"] = round(100 * statistics.median(loss), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--notes", type=int, default=0, help="first N test sentences (0: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--triton", action="store_true", help="also through two Triton servers")
    parser.add_argument("--gpu-ensemble", action="store_true",
                        help="also the GPU configs on this CPU: the decoders with and without the windows")
    parser.add_argument("--no-in-process", action="store_true")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "profiling_overhead.json")
    args = parser.parse_args()

    notes = load_notes(args.data_dir, args.notes)
    report: dict = {"hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "ner_version": int(latest_version(args.repository / "ner").name), "notes": len(notes),
                    "rounds": args.rounds, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="medner-profiling-") as tmp:
        repository = served_copy(args.repository, Path(tmp), args.data_dir)
        if not args.no_in_process:
            report["in_process"] = summary(in_process(repository, notes, args.rounds, Path(tmp) / "local"))
            report["components"] = components(repository, notes, Path(tmp) / "components")
            print(json.dumps({k: report[k] for k in ("in_process", "components")}), flush=True)
        if args.triton:
            report[f"triton_c{args.concurrency}"] = summary(
                triton(repository, notes, args.rounds, args.concurrency, Path(tmp)))
        if args.gpu_ensemble:
            report[f"gpu_ensemble_c{args.concurrency}"] = summary(
                gpu_ensemble(args.repository, notes, args.rounds, args.concurrency, Path(tmp)), baseline="before")
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]  # 1/5/15 min: other work skews both sides
    report["command"] = " ".join(["python", *sys.argv])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
