"""Serving benchmark: the same notes through each way of running the model, side by side in one run.

    python benchmarks/serving.py [--rounds 3] [--threads 2] [--concurrency 1 4 16 64]

Variants (interleaved round by round, so machine noise hits all of them alike):
  hf_pipeline            transformers pipeline("token-classification"), PyTorch, one note per call
  ort_local[_int8]       in-process ONNX Runtime, the CPU ``ner`` model's code (length-sorted micro-batches)
  triton_cN[_int8]       Triton end to end (text in, entities out), N requests in flight of 8 notes each
                         (the client's default batch); triton_c16_b1: one note per request
  triton_encoder_c16     Triton encoder only: pre-tokenized windows in, logits out (tokenize/decode not timed)
  latency pairs          single notes, in-process and Triton at concurrency 1, in blocks over the same notes

Throughput is notes (BeHealthy test sentences) per second over the whole set; ratios are taken within each
round, then the median over rounds. CPU % is the CPU time of this process plus tritonserver and its
python stubs over the variant's wall time, as a share of all cores; RSS is tritonserver with its stubs
for Triton variants, this process for in-process ones. Results go to benchmarks/results/serving.{md,json}
with two plots (throughput vs concurrency, latency CDF), stamped with the hardware and package versions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, hardware_info, load_notes, percentiles, write_results  # noqa: E402

NOTES_PER_REQUEST = 8  # AsyncNerClient's default batch
# On-demand Linux prices, AWS us-east-1, as published in AWS's price list (2024; not re-checked here:
# this machine has no internet). Check current prices before quoting the cost table.
# instance -> ($ per hour, vCPUs, GPU or None)
PRICES: dict[str, tuple[float, int, str | None]] = {
    "c7i.large": (0.08925, 2, None),
    "c7i.xlarge": (0.1785, 4, None),
    "g5.xlarge": (1.006, 4, "A10G"),
    "g6.xlarge": (0.8048, 4, "L4"),
}
PRICE_SOURCE = "AWS on-demand Linux, us-east-1, 2024 price list"


class ResourceMeter:
    """CPU time and RSS of a set of processes (this one, or tritonserver and its python stubs)."""

    def __init__(self, root_pid: int, children: bool):
        import psutil

        self.root, self.children = psutil.Process(root_pid), children

    def processes(self) -> list:
        return [self.root, *(self.root.children(recursive=True) if self.children else [])]

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except Exception:  # a stub that exited between listing and reading
                pass
        return total

    def rss_mb(self) -> float:
        return sum(p.memory_info().rss for p in self.processes()) / 2**20


def measured(run: Callable[[], dict], meters: list[ResourceMeter], rss: ResourceMeter | None) -> dict:
    """Run one variant; add its CPU share of the machine and the RSS after it (NaN: a server not ours)."""
    cpu, wall = sum(m.cpu_seconds() for m in meters), time.perf_counter()
    result = run()
    wall = time.perf_counter() - wall
    result["cpu_pct"] = 100 * (sum(m.cpu_seconds() for m in meters) - cpu) / wall / os.cpu_count()
    result["rss_mb"] = rss.rss_mb() if rss else float("nan")
    return result


def bench_in_process(extract_batch: Callable, notes: list[str]) -> dict:
    started = time.perf_counter()
    extract_batch(notes)
    return {"notes_per_s": len(notes) / (time.perf_counter() - started)}


async def _concurrently(calls: list[Callable], concurrency: int) -> tuple[float, list[float]]:
    """Await every call with at most ``concurrency`` in flight (after a warm-up of ``concurrency``)."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable) -> None:
        async with gate:
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(one(c) for c in calls[:concurrency]))
    latencies.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return time.perf_counter() - started, latencies


def bench_triton(url: str, model: str, notes: list[str], concurrency: int, batch_size: int) -> dict:
    """Text in, entities out: ``batch_size`` notes per request, ``concurrency`` requests in flight."""
    from clients import AsyncNerClient

    chunks = [[n.encode() for n in notes[i: i + batch_size]] for i in range(0, len(notes), batch_size)]

    async def run() -> tuple[float, list[float]]:
        async with AsyncNerClient(url, model=model) as client:
            return await _concurrently([lambda c=c, i=i: client.infer(c, i) for i, c in enumerate(chunks)],
                                       concurrency)

    elapsed, latencies = asyncio.run(run())
    return {"notes_per_s": len(notes) / elapsed, **percentiles(latencies)}


def bench_encoder(url: str, tokenizer, notes: list[str], concurrency: int, batch_size: int) -> dict:
    """Encoder only: windows tokenized up front, ``batch_size`` notes of windows per request."""
    import tritonclient.grpc.aio as grpcclient

    from medner.inference import TokenizedBatch, pack_notes, tokenize_notes

    batch = tokenize_notes(tokenizer, notes)
    requests = []
    for first in range(0, len(notes), batch_size):
        ids, mask, _ = pack_notes(TokenizedBatch(batch.input_ids, batch.attention_mask,
                                                 batch.notes[first: first + batch_size]))
        inputs = [grpcclient.InferInput("input_ids", list(ids.shape), "INT64"),
                  grpcclient.InferInput("attention_mask", list(mask.shape), "INT64")]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask)
        requests.append(inputs)

    async def run() -> tuple[float, list[float]]:
        client = grpcclient.InferenceServerClient(url)
        try:
            return await _concurrently([lambda r=r: client.infer("ner_encoder", r) for r in requests], concurrency)
        finally:
            await client.close()

    elapsed, latencies = asyncio.run(run())
    return {"notes_per_s": len(notes) / elapsed, **percentiles(latencies)}


def latency_pairs(url: str, local, model: str, sample: list[str], triton_first: bool) -> dict[str, list[float]]:
    """Single-note latency in-process and through Triton (concurrency 1) over the same notes, one
    block after the other (order swapped each round). Not note by note: each side's ONNX Runtime
    threads then still spin while the other starts, which doubled both latencies on 2 cores."""
    from clients import NerClient

    def timed(extract) -> list[float]:
        for note in sample[:10]:  # warm up
            extract([note])
        latencies = []
        for note in sample:
            t = time.perf_counter()
            extract([note])
            latencies.append(time.perf_counter() - t)
        return latencies

    with NerClient(url, model=model) as client:
        sides = {"triton": client.extract, "in_process": local.extract}
        order = list(sides) if triton_first else list(sides)[::-1]
        return {side: timed(sides[side]) for side in order}


def served_versions(url: str, models: tuple[str, ...] = ("ner", "ner_int8")) -> dict[str, list[int] | None]:
    """The versions of each of ``models`` that the server at ``url`` reports (model metadata, which needs no
    admin key); None for a model it does not serve or when it does not answer."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    found: dict[str, list[int] | None] = {}
    try:
        for model in models:
            try:
                metadata = client.get_model_metadata(model, as_json=True)
                found[model] = sorted(int(v) for v in metadata.get("versions", []))
            except InferenceServerException:
                found[model] = None
    finally:
        client.close()
    return found


def int8_quality(repository: Path, version: int) -> dict[str, float]:
    """Test entity F1 of fp32 and INT8 from the export gates of ``version`` (its lineage)."""
    from medner.registry import lineage

    record = lineage(repository, version)
    return {"fp32": record["metrics_fp32"]["entity_f1"],
            "int8": (record.get("metrics_int8") or {}).get("entity_f1", float("nan")), "version": version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model-dir", type=Path, help="PyTorch model for the HF pipeline (default: the run or folder "
                        "the benchmarked version was exported from, its lineage's source)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--notes", type=int, default=0, help="use the first N test sentences (0: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch / ONNX Runtime intra-op threads in-process (Triton: the models' configs)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--latency-sample", type=int, default=200)
    parser.add_argument("--url", help="benchmark a running Triton (e.g. the GPU container) at this gRPC address "
                        "instead of starting one on --repository (which still gives the in-process models)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving")
    parser.add_argument("--render-only", action="store_true", help="redraw the table and plots from OUT.json")
    args = parser.parse_args()
    if args.render_only:
        report(json.loads(args.out.with_suffix(".json").read_text()), args.out)
        return

    import tempfile

    import torch
    from transformers import AutoTokenizer, pipeline

    from clients.local import LocalNerModel
    from export.onnx_export import package_versions
    from medner.registry import champion, lineage, versions
    from medner.triton import TritonServer

    torch.set_num_threads(args.threads)
    notes = load_notes(args.data_dir, args.notes)
    sample = notes[:: max(1, len(notes) // args.latency_sample)][: args.latency_sample]
    with tempfile.TemporaryDirectory() as tmp:
        version = versions(args.repository)[-1].version  # the newest: what a server with no pinning loads
        source = lineage(args.repository, version).get("source", "")
        hf_model = str(args.model_dir or source)  # the served model itself, not whatever trained last
        if args.model_dir is None:
            from medner.steps import model_folder  # a run's model, or a folder as it is

            if not source:
                raise SystemExit(f"version {version} has no lineage source: pass --model-dir")
            hf_model = str(model_folder(source))
        hf = pipeline("token-classification", model=hf_model, aggregation_strategy="simple", device=-1)
        local = {m: LocalNerModel(args.repository, m, threads=args.threads, version=version)
                 for m in ("ner", "ner_int8")}
        tokenizer = AutoTokenizer.from_pretrained(args.repository / "ner" / str(version))
        server = contextlib.nullcontext() if args.url else TritonServer.on_free_ports(
            args.repository, log_file=Path(tmp) / "triton.log")
        with server:
            this = ResourceMeter(os.getpid(), children=False)
            triton = None if args.url else ResourceMeter(server.process.pid, children=True)
            url = args.url or server.grpc_url
            meters = [m for m in (this, triton) if m]
            variants: dict[str, tuple[Callable[[], dict], ResourceMeter | None]] = {
                "hf_pipeline": (lambda: bench_in_process(lambda ns: [hf(n) for n in ns], notes), this),
                "ort_local": (lambda: bench_in_process(local["ner"].extract, notes), this),
                "ort_local_int8": (lambda: bench_in_process(local["ner_int8"].extract, notes), this),
            }
            for model, suffix in (("ner", ""), ("ner_int8", "_int8")):
                for c in args.concurrency:
                    variants[f"triton_c{c}{suffix}"] = (
                        lambda model=model, c=c: bench_triton(url, model, notes, c, NOTES_PER_REQUEST), triton)
                variants[f"triton_c16_b1{suffix}"] = (lambda model=model: bench_triton(url, model, notes, 16, 1),
                                                      triton)
            variants["triton_encoder_c16"] = (
                lambda: bench_encoder(url, tokenizer, notes, 16, NOTES_PER_REQUEST), triton)
            rounds: dict[str, list[dict]] = {name: [] for name in variants}
            pairs: dict[str, list[dict]] = {"ner": [], "ner_int8": []}
            for r in range(args.rounds):
                for name, (run, rss) in variants.items():
                    rounds[name].append(measured(run, meters, rss))
                    print(f"round {r + 1} {name}: {rounds[name][-1]['notes_per_s']:.1f} notes/s", flush=True)
                for model in pairs:
                    pairs[model].append(latency_pairs(url, local[model], model, sample, triton_first=r % 2 == 1))
                    print(f"round {r + 1} latency pairs {model}: p50 in-process "
                          f"{np.median(pairs[model][-1]['in_process']) * 1000:.1f} ms, Triton "
                          f"{np.median(pairs[model][-1]['triton']) * 1000:.1f} ms", flush=True)
            served = served_versions(url)
    machine = hardware_info()
    meta = {"hardware": hardware(machine), "machine": machine, "date": time.strftime("%Y-%m-%d"),
            "notes": len(notes), "rounds": args.rounds,
            "threads_in_process": args.threads, "notes_per_request": NOTES_PER_REQUEST,
            "latency_sample": len(sample), "packages": package_versions(),
            "server": args.url or "started here on --repository", "f1": int8_quality(args.repository, version),
            "version_choice": "the newest version in --repository (in-process variants and the F1 above)",
            "served_versions": served, "champion": champion(args.repository),
            "models": {"benchmarked_version": version, "its_source": source,
                       "hf_pipeline": str(args.model_dir) if args.model_dir else source},
            "triton_threads": {m: _config_threads(args.repository, m) for m in ("ner", "ner_int8")},
            "triton_instances": {m: _config_instances(args.repository, m) for m in ("ner", "ner_int8")},
            "command": "python benchmarks/serving.py " + " ".join(sys.argv[1:])}
    saved = {"meta": meta, "rounds": rounds, "latency_pairs": pairs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(saved, indent=1))
    report(saved, args.out)


def _config_instances(repository: Path, model: str) -> int:
    from medner.triton_control import read_model_config

    return sum(group.count for group in read_model_config(repository / model / "config.pbtxt").instance_group) or 1


def _config_threads(repository: Path, model: str) -> str:
    from medner.triton_control import config_parameters

    return config_parameters(repository / model / "config.pbtxt").get("threads", "1")


def report(saved: dict, out: Path) -> None:
    """The markdown table (with the cost table) and the two plots from a saved run."""
    meta, rounds, pairs = saved["meta"], saved["rounds"], saved["latency_pairs"]
    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rounds.items()}

    def ratio(name: str, reference: str) -> float:  # within each round, then the median over rounds
        return statistics.median(a["notes_per_s"] / b["notes_per_s"] for a, b in zip(rounds[name], rounds[reference]))

    def same_precision(name: str) -> str:
        return "ort_local_int8" if name.endswith("_int8") else "ort_local"

    def cell(values: dict, key: str, fmt: str = ".1f") -> str:
        return format(values[key], fmt) if key in values and values[key] == values[key] else "–"  # NaN: –

    lines = [
        f"# Serving benchmark ({meta['date']})", "",
        f"Hardware: {meta['hardware']}. {meta['notes']} notes (BeHealthy test sentences), median of {meta['rounds']} "
        f"interleaved rounds; ratios are taken within each round. Threads: in-process {meta['threads_in_process']}"
        f" (ONNX Runtime intra-op, and torch for the HF pipeline); Triton `ner`/`ner_int8`: "
        f"{meta['triton_threads']['ner']} ONNX Runtime thread(s) per instance, "
        f"{meta.get('triton_instances', {}).get('ner', 'see config.pbtxt for the')} instances. Triton variants send "
        f"{meta['notes_per_request']} notes per request unless `_b1`. Packages: "
        + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()) + ".", "",
        "| variant | notes/s | p50 ms | p95 ms | p99 ms | CPU % | RSS MB | vs in-process ORT, same precision "
        "| vs hf_pipeline |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['notes_per_s']:.1f} | {cell(s, 'p50_ms')} | {cell(s, 'p95_ms')} | "
                     f"{cell(s, 'p99_ms')} | {s['cpu_pct']:.0f} | {cell(s, 'rss_mb', '.0f')} | "
                     f"{ratio(name, same_precision(name)):.2f}x | {ratio(name, 'hf_pipeline'):.2f}x |")
    lines += ["", "Latency: p50/p95/p99 per request (of 8 notes, or 1 for `_b1`) under the given concurrency; "
              "in-process single-note latency is in the next table. CPU %: share of all cores used by this "
              "process plus tritonserver and its stubs (the client runs in this process). RSS: tritonserver and "
              "its python stubs (all models loaded) for Triton variants, this benchmark process (PyTorch and "
              "both ONNX sessions loaded) for in-process ones.", "",
              "## Single-note latency, in-process vs Triton at concurrency 1 (same notes, block after block)", "",
              "| model | in-process p50 / p95 / p99 ms | Triton p50 / p95 / p99 ms | Triton p50 / in-process p50 |",
              "| --- | ---: | ---: | ---: |"]
    for model, runs in pairs.items():
        local = percentiles([x for r in runs for x in r["in_process"]])
        served = percentiles([x for r in runs for x in r["triton"]])
        p50_ratio = statistics.median(np.median(r["triton"]) / np.median(r["in_process"]) for r in runs)
        lines.append(f"| {model} | {local['p50_ms']:.1f} / {local['p95_ms']:.1f} / {local['p99_ms']:.1f} | "
                     f"{served['p50_ms']:.1f} / {served['p95_ms']:.1f} / {served['p99_ms']:.1f} | {p50_ratio:.2f}x |")
    lines += ["", f"{meta['latency_sample']} notes per round, all rounds pooled; the ratio is the median of "
              "per-round ratios.", "", "## INT8 vs fp32", "",
              f"End to end at concurrency 16: INT8 {ratio('triton_c16_int8', 'triton_c16'):.2f}x fp32 throughput; "
              f"in-process {ratio('ort_local_int8', 'ort_local'):.2f}x. {version_sentence(meta)}", "",
              "## Cost per million notes", "", *cost_table(meta, summary)]
    lines += ["", f"Command: `{meta['command']}`. Plots: serving_throughput.png, serving_latency.png."]
    write_results(out, lines)
    plot(summary, pairs, meta, out)


def machine(meta: dict) -> dict:
    """The benchmark machine of a saved run: as recorded, else parsed from the hardware line (older runs)."""
    import re

    if "machine" in meta:
        return meta["machine"]
    cores = re.search(r", (\d+) cores", meta["hardware"])
    rest = meta["hardware"].split(" cores, ", 1)[1] if " cores, " in meta["hardware"] else ""
    return {"cpu": meta["hardware"].split(",")[0], "cores": int(cores.group(1)) if cores else None,
            "gpus": [] if rest in ("", "no GPU") else rest.split(", ")}


def version_sentence(meta: dict) -> str:
    """Which model version the figures are of, and whose F1 is quoted: all read from the saved run."""
    f1, version = meta["f1"], meta["f1"]["version"]
    choice = meta.get("version_choice", "the newest version in the repository")
    text = (f"Test entity F1 from the export gates in the lineage of version {version} ({choice}): "
            f"fp32 {f1['fp32']:.4f}, INT8 {f1['int8']:.4f} ({100 * (f1['int8'] - f1['fp32']):+.2f} points).")
    served = meta.get("served_versions")
    if served is None:
        text += " This run did not record which version the server reported serving."
    else:
        for model in ("ner", "ner_int8"):
            found = served.get(model)
            listed = ", ".join(map(str, found)) if found else "none"
            same = "the same" if found == [version] else f"not version {version} alone"
            text += f" The server reported `{model}` version(s) {listed} ({same})."
    if "champion" not in meta:
        text += " The registry's champion at the time was not recorded by this run."
    elif meta["champion"] == version:
        text += f" Version {version} was the registry's champion (serving.json)."
    else:
        text += (f" The registry's champion (serving.json) was version {meta['champion']}: this run measured "
                 f"version {version}, not the champion.")
    return text


def cost_table(meta: dict, summary: dict) -> list[str]:
    """Cost per million notes from the Triton concurrency-16 throughput, priced as a CPU instance with as many
    vCPUs as the benchmark machine had cores, when the server ran on that machine; GPU rows: break-even only."""
    found = machine(meta)
    own_server = meta["server"].startswith("started here")
    cpu = [name for name, (_, vcpus, gpu) in PRICES.items() if gpu is None and vcpus == found["cores"]]
    if not own_server:
        return [f"No cost table: the Triton figures come from the server at {meta['server']}, whose hardware this "
                "run did not record."]
    if not cpu:
        return [f"No cost table: no priced CPU instance has this machine's {found['cores']} cores "
                f"({', '.join(PRICES)})."]
    name = cpu[0]
    price, vcpus, _ = PRICES[name]
    gpu_note = (f"This machine listed GPU(s) ({', '.join(found['gpus'])}), but the server started here loads the CPU "
                "model configs, so no GPU throughput was measured" if found["gpus"] else
                "No GPU was detected on this machine (nvidia-smi), so no GPU throughput was measured")
    lines = [f"From the Triton concurrency-16 throughput above, priced as a {name} ({vcpus} vCPU, as many as this "
             f"machine's {found['cores']} cores); prices: {PRICE_SOURCE}, constants in this script (not re-checked "
             f"on {meta['date']}). {gpu_note}: GPU rows give the throughput a GPU instance must reach to match the "
             "CPU INT8 cost, computed, not measured.", "",
             "| instance | $/hour | model | notes/s | $ per million notes |", "| --- | ---: | --- | ---: | ---: |"]
    for variant, label in (("triton_c16", "fp32"), ("triton_c16_int8", "INT8")):
        rate = summary[variant]["notes_per_s"]
        lines.append(f"| {name} ({vcpus} vCPU) | {price:.4f} | {label} | {rate:.0f} (measured) | "
                     f"{price / (rate * 3600) * 1e6:.3f} |")
    int8_cost = price / (summary["triton_c16_int8"]["notes_per_s"] * 3600)
    for gpu_name, (gpu_price, _, gpu) in PRICES.items():
        if gpu:
            lines.append(f"| {gpu_name} (1x {gpu}) | {gpu_price:.4f} | TensorRT FP16 | break-even: "
                         f"{gpu_price / int8_cost / 3600:.0f} | {int8_cost * 1e6:.3f} at break-even |")
    return lines


def plot(summary: dict, pairs: dict, meta: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for suffix, label, color in (("", "fp32", "tab:blue"), ("_int8", "INT8", "tab:orange")):
        levels = sorted(int(n[len("triton_c"):].removesuffix(suffix)) for n in summary
                        if n.startswith("triton_c") and "_b1" not in n and n.endswith(suffix)
                        and (suffix or not n.endswith("_int8")))
        ax.plot(levels, [summary[f"triton_c{c}{suffix}"]["notes_per_s"] for c in levels], "o-", color=color,
                label=f"Triton {label}, {meta['notes_per_request']} notes/request")
        ax.plot([16], [summary[f"triton_c16_b1{suffix}"]["notes_per_s"]], "x", color=color, markersize=9,
                label=f"Triton {label}, 1 note/request")
        ax.axhline(summary[f"ort_local{suffix}"]["notes_per_s"], color=color, linestyle="--",
                   label=f"in-process ORT {label}")
    ax.plot([16], [summary["triton_encoder_c16"]["notes_per_s"]], "s", color="tab:green",
            label="Triton encoder only (pre-tokenized)")
    ax.axhline(summary["hf_pipeline"]["notes_per_s"], color="grey", linestyle=":", label="HF pipeline (PyTorch)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("requests in flight (concurrency)")
    ax.set_ylabel("notes per second (higher is better)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"medner serving throughput, {meta['date']}\n{meta['hardware']}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(out.parent / f"{out.name}_throughput.png", dpi=120)

    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for model, color in (("ner", "tab:blue"), ("ner_int8", "tab:orange")):
        for key, style in (("in_process", "--"), ("triton", "-")):
            ms = np.sort([x * 1000 for r in pairs[model] for x in r[key]])
            ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms), style, color=color,
                    label=f"{model} {'in-process' if key == 'in_process' else 'Triton, concurrency 1'}")
    ax.set_xscale("log")
    ax.set_xlabel("single-note latency, ms (log scale)")
    ax.set_ylabel("share of notes")
    ax.set_title(f"medner single-note latency CDF, {meta['date']}\n{meta['hardware']}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.savefig(out.parent / f"{out.name}_latency.png", dpi=120)


if __name__ == "__main__":
    main()
