"""ExtractFlow at scale: 1 and 2 workers, in-process and through Triton, side by side in one run.

    python benchmarks/extract_scale.py [--notes 100000] [--repository model_repository] [--model ner_int8]

Synthesises ``--notes`` notes from BeHealthy's train sentences (2 to 4 per note, a fixed seed) into one JSONL file,
then runs `python flows/extract_flow.py run` on it once per variant, each into a fresh SQLite records store and a
fresh Metaflow datastore: in-process (the repository's champion; 1 worker x 2 ONNX Runtime threads, 2 workers x 1)
and through a Triton server this script starts on 127.0.0.1 (the same model; 1 and 2 workers). Per variant: notes/s
end to end (the flow's wall time, Metaflow's start-up and listing included) and per worker (the shards' own
seconds), the store's write rate (rows per second inside its transactions), each worker's RSS after its first and
last batch (flat = no leak), Triton's RSS, and the cost per million notes on the priced CPU instance with this
machine's cores (benchmarks/serving.py's prices). No GPU figure: none was measured.

Writes benchmarks/results/extract_scale.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, hardware_info, process_rss_mb, write_results  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "extract_scale"
SHARD_NOTES = 10_000  # ExtractFlow's default
VARIANTS = {  # name -> (through Triton, workers, ONNX Runtime threads per in-process worker)
    "in-process, 1 worker": (False, 1, 2),
    "in-process, 2 workers": (False, 2, 1),
    "Triton, 1 worker": (True, 1, 0),
    "Triton, 2 workers": (True, 2, 0),
}


def synthesise(path: Path, count: int, data_dir: str | None, seed: int = 0) -> int:
    """``count`` notes of 2-4 train sentences as JSONL; returns the bytes written."""
    from medner.config import data_dir as resolve
    from medner.data import read_behealthy
    from medner.spans import join_tokens

    sentences = [join_tokens(s.tokens)[0] for s in read_behealthy(resolve(data_dir))["train"]]
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"n{i}", "text": " ".join(rng.sample(sentences, rng.randint(2, 4)))}) + "\n")
    return path.stat().st_size


def run_variant(notes: Path, work: Path, repository: Path, model: str, url: str, workers: int, threads: int) -> dict:
    """One ExtractFlow run into a fresh store and datastore; its wall time and the shards' stats."""
    work.mkdir()
    env = {**os.environ, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(work), "METAFLOW_DEFAULT_DATASTORE": "local",
           "METAFLOW_DEFAULT_METADATA": "local", "USERNAME": os.environ.get("USERNAME", "medner")}
    command = [sys.executable, str(ROOT / "flows" / "extract_flow.py"), "--no-pylint", "run", "--notes", str(notes),
               "--db", f"sqlite:///{work / 'records.db'}", "--repository", str(repository), "--model", model,
               "--shard-notes", str(SHARD_NOTES), "--max-workers", str(workers)]
    command += ["--url", url] if url else ["--threads", str(threads)]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ExtractFlow failed:\n{proc.stderr[-3000:]}")
    read = subprocess.run([sys.executable, "-c", "import json\nfrom metaflow import Flow\n"
                           "run = Flow('ExtractFlow').latest_successful_run\n"
                           "print(json.dumps({'shards': run.data.shard_stats, 'totals': run.data.totals}))"],
                          cwd=work, env=env, capture_output=True, text=True, check=True)
    return {"seconds": seconds, **json.loads(read.stdout.strip().splitlines()[-1])}


def summarise(result: dict, notes: int) -> dict:
    shards = result["shards"]
    rows = sum(s["extracted"] + s["errors"] + sum(s["entities"].values()) for s in shards)
    return {
        "notes_per_s": notes / result["seconds"],
        "worker_notes_per_s": sum(s["extracted"] + s["errors"] for s in shards) / sum(s["seconds"] for s in shards),
        "store_rows_per_s": rows / sum(s["write_seconds"] for s in shards),
        "store_share": sum(s["write_seconds"] for s in shards) / sum(s["seconds"] for s in shards),
        "rss_first_mb": max(s["rss_mb"][0] for s in shards), "rss_last_mb": max(s["rss_mb"][-1] for s in shards),
        "errors": result["totals"]["errors"], "extracted": result["totals"]["extracted"],
    }


def run(count: int, repository: Path, model: str, data_dir: str | None, only: list[str]) -> None:
    from medner.triton import TritonServer
    from records.extract import champion_model

    model, version = champion_model(repository, model)
    measured: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        notes = Path(tmp) / "notes.jsonl"
        size = synthesise(notes, count, data_dir)
        only_model = ["--model-control-mode=explicit", f"--load-model={model}"]
        with TritonServer.on_free_ports(repository, extra_args=only_model) as server:
            for name, (triton, workers, threads) in VARIANTS.items():
                if only and name not in only:
                    continue
                print(f"{name} ...", flush=True)
                result = run_variant(notes, Path(tmp) / f"run{len(measured)}", repository, model,
                                     server.grpc_url if triton else "", workers, threads)
                measured[name] = {**summarise(result, count), "workers": workers, "triton": triton,
                                  "triton_rss_mb": process_rss_mb(server.process.pid) if triton else None}
    data = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "hardware": hardware_info(), "notes": count,
            "bytes": size, "model": model, "version": version, "shard_notes": SHARD_NOTES, "variants": measured}
    write_results(OUT, report(data), data)


def report(r: dict) -> list[str]:
    from benchmarks.serving import PRICE_SOURCE, PRICES

    cores = r["hardware"]["cores"]
    instance = next(((n, p) for n, (p, vcpus, gpu) in PRICES.items() if gpu is None and vcpus == cores), None)
    first = next(iter(r["variants"].values()))["notes_per_s"]
    lines = [
        f"# ExtractFlow at scale ({r['date']})", "",
        "`python benchmarks/extract_scale.py` (this file is its output). Machine: " + hardware(r["hardware"]) + ".", "",
        f"{r['notes']:,} synthetic notes ({r['bytes'] / 2**20:.0f} MB of JSONL; 2-4 BeHealthy train sentences each), "
        f"`{r['model']}` version {r['version']}, shards of {r['shard_notes']:,} notes, one SQLite store per variant. "
        "Variants ran one after another in one run; ratios are to the first row.", "",
        "| variant | notes/s end to end | ratio | notes/s per worker | store rows/s | share of time in the store | "
        "worker RSS MB (first → last batch) | Triton RSS MB | $ per million notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, v in r["variants"].items():
        cost = f"{instance[1] / (v['notes_per_s'] * 3600) * 1e6:.3f}" if instance else "–"
        triton_rss = f"{v['triton_rss_mb']:.0f}" if v["triton_rss_mb"] else "–"
        lines.append(f"| {name} | {v['notes_per_s']:.0f} | {v['notes_per_s'] / first:.2f}x | "
                     f"{v['worker_notes_per_s']:.0f} | {v['store_rows_per_s']:.0f} | {v['store_share']:.1%} | "
                     f"{v['rss_first_mb']:.0f} → {v['rss_last_mb']:.0f} | {triton_rss} | {cost} |")
    lines += ["", (f"Cost: the end-to-end rate priced as a {instance[0]} ({PRICE_SOURCE}; constants in "
                   "benchmarks/serving.py, not re-checked here), the whole machine for the run. GPU: not measured "
                   "(no GPU was lent)." if instance else f"No cost column: no priced CPU instance has {cores} cores.")]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=100_000)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="", help="served model (default: INT8 where its gate passed)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--only", nargs="*", default=[], choices=list(VARIANTS), help="run only these variants")
    args = parser.parse_args()
    run(args.notes, args.repository, args.model, args.data_dir, args.only)


if __name__ == "__main__":
    main()
