"""Serving benchmark: the same notes through each way of running the model, side by side in one run.

    python benchmarks/serving.py --repository model_repository [--rounds 3] [--threads 2]

Variants (interleaved round by round, so machine noise hits all of them alike):
  hf_pipeline       transformers pipeline("token-classification"), PyTorch, one note per call
  ort_local[_int8]  in-process ONNX Runtime through medner.inference (length-sorted micro-batches)
  triton_cN_bK[_int8] Triton end to end (text in, entities out): N concurrent gRPC requests of K notes

Throughput is notes (here: BeHealthy test sentences) per second over the whole set; latency percentiles
are from one-note calls on a sample for in-process variants, and per request (of K notes) under the
given concurrency for Triton. Results go to benchmarks/results/serving.{md,json,png}, stamped with the hardware.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def hardware() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, no GPU"


def percentiles(latencies: list[float]) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def load_notes(data_dir: str | None, limit: int) -> list[str]:
    from medner.config import data_dir as resolve
    from medner.data import read_behealthy
    from medner.spans import join_tokens

    test = read_behealthy(resolve(data_dir))["test"]
    return [join_tokens(s.tokens)[0] for s in test[: limit or None]]


def bench_in_process(extract_batch, extract_one, notes: list[str], sample: list[str]) -> dict:
    started = time.perf_counter()
    extract_batch(notes)
    throughput = len(notes) / (time.perf_counter() - started)
    latencies = []
    for note in sample:
        t = time.perf_counter()
        extract_one(note)
        latencies.append(time.perf_counter() - t)
    return {"notes_per_s": throughput, **percentiles(latencies)}


def bench_triton(url: str, model: str, notes: list[str], concurrency: int, batch_size: int) -> dict:
    """Notes sent ``batch_size`` per request, ``concurrency`` requests in flight; latency per request."""
    from clients import AsyncNerClient

    chunks = [[n.encode() for n in notes[i: i + batch_size]] for i in range(0, len(notes), batch_size)]

    async def run() -> tuple[float, list[float]]:
        latencies: list[float] = []
        async with AsyncNerClient(url, model=model) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one(i: int, chunk: list[bytes]) -> None:
                async with gate:
                    t = time.perf_counter()
                    await client.infer(chunk, i)
                    latencies.append(time.perf_counter() - t)

            await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks[:concurrency])))  # warm up
            latencies.clear()
            started = time.perf_counter()
            await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks)))
            return time.perf_counter() - started, latencies

    elapsed, latencies = asyncio.run(run())
    return {"notes_per_s": len(notes) / elapsed, **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model-dir", type=Path, help="PyTorch model for the HF pipeline (default: latest TrainFlow)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--notes", type=int, default=0, help="use the first N test sentences (0: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime intra-op threads in-process")
    parser.add_argument("--triton", nargs="+", default=["1x1", "16x1", "16x8"],
                        help="CONCURRENCYxNOTES_PER_REQUEST settings for Triton")
    parser.add_argument("--latency-sample", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving")
    parser.add_argument("--render-only", action="store_true", help="redraw the table and plot from OUT.json")
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.rounds = saved["meta"]["rounds"]
        args.threads = saved["meta"]["threads_in_process"]
        report(saved["rounds"], args, saved["meta"]["notes"], saved["meta"]["packages"], saved["meta"])
        return

    import tempfile

    import torch
    from transformers import pipeline

    from clients.local import LocalNerModel
    from export.onnx_export import package_versions
    from medner.triton import TritonServer, free_ports

    torch.set_num_threads(args.threads)
    notes = load_notes(args.data_dir, args.notes)
    sample = notes[:: max(1, len(notes) // args.latency_sample)][: args.latency_sample]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from metaflow import Flow

            from medner.training import files_to_dir

            model_dir = files_to_dir(Flow("TrainFlow").latest_successful_run.data.model_files, tmp)
        hf = pipeline("token-classification", model=str(model_dir), aggregation_strategy="simple", device=-1)
        local = {m: LocalNerModel(args.repository, m, threads=args.threads) for m in ("ner", "ner_int8")}
        variants = {
            "hf_pipeline": lambda: bench_in_process(lambda ns: [hf(n) for n in ns], hf, notes, sample),
            **{f"ort_local{'_int8' if m == 'ner_int8' else ''}":
               (lambda m=m: bench_in_process(local[m].extract, lambda n, m=m: local[m].extract([n]), notes, sample))
               for m in local},
        }
        grpc_port, http_port, metrics_port = free_ports(3)
        with TritonServer(args.repository, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                          log_file=Path(tmp) / "triton.log") as server:
            for model in ("ner", "ner_int8"):
                for setting in args.triton:
                    c, b = map(int, setting.split("x"))
                    name = f"triton_c{c}_b{b}{'_int8' if model == 'ner_int8' else ''}"
                    variants[name] = lambda model=model, c=c, b=b: bench_triton(server.grpc_url, model, notes, c, b)
            rounds: dict[str, list[dict]] = {name: [] for name in variants}
            for r in range(args.rounds):
                for name, run in variants.items():
                    rounds[name].append(run())
                    print(f"round {r + 1} {name}: {rounds[name][-1]['notes_per_s']:.1f} notes/s", flush=True)
    report(rounds, args, len(notes), package_versions())


def report(rounds: dict[str, list[dict]], args: argparse.Namespace, n_notes: int, packages: dict[str, str],
           meta: dict | None = None) -> None:
    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rounds.items()}
    stamp = meta or {"hardware": hardware(), "date": time.strftime("%Y-%m-%d"), "notes": n_notes,
                     "rounds": args.rounds, "threads_in_process": args.threads, "packages": packages,
                     "command": "python benchmarks/serving.py " + " ".join(sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": stamp, "results": summary, "rounds": rounds},
                                                        indent=2))
    lines = [
        f"# Serving benchmark ({stamp['date']})", "",
        f"Hardware: {stamp['hardware']}. {n_notes} notes (BeHealthy test sentences), median of {args.rounds} "
        f"interleaved rounds; in-process threads: {args.threads}; Triton encoder threads: see "
        "model_repository/ner_encoder/config.pbtxt. Packages: "
        + ", ".join(f"{k} {v}" for k, v in stamp["packages"].items()) + ".", "",
        "| variant | notes/s | p50 ms | p99 ms | vs in-process ORT, same precision | vs hf_pipeline |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in summary.items():
        same = summary["ort_local_int8" if name.endswith("_int8") else "ort_local"]["notes_per_s"]
        lines.append(f"| {name} | {s['notes_per_s']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
                     f"{s['notes_per_s'] / same:.2f}x | "
                     f"{s['notes_per_s'] / summary['hf_pipeline']['notes_per_s']:.2f}x |")
    lines += ["", f"Command: `{stamp.get('command', 'python benchmarks/serving.py --rounds 3')}`. Triton variants:"
              " cN_bK = N concurrent requests of K notes each (latency per request); the encoder runs with"
              " ragged dynamic batching and length-bucketed micro-batches."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    names = list(summary)
    ax.barh(names, [summary[n]["notes_per_s"] for n in names], color="tab:blue")
    ax.set_xlabel("notes per second (higher is better)")
    ax.set_title(f"medner serving throughput — {stamp['hardware']}", fontsize=9)
    ax.invert_yaxis()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
