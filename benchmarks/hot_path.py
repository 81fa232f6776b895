"""The serving hot path of this checkout against a baseline, side by side in one run: another commit's code on the
same model files, or this code on another model's files.

    git worktree add /tmp/medner-baseline <commit>
    python benchmarks/hot_path.py --baseline /tmp/medner-baseline [--rounds 5] [--concurrency 16] [--models ner]
    python benchmarks/hot_path.py --repository REPO --baseline-repository OTHER_REPO

Both sides tag the same notes (the BeHealthy test sentences) with the newest version of each of ``--models``, the
baseline from ``--baseline-repository`` (default: ``--repository``), each with its own code, in fresh processes of
this Python (a tree whose code predates a file of the version, such as ``span_edges.json``, ignores it):

in_process   ``clients.local.LocalNerModel(repository, threads=1).extract`` (validation, tokenizing, ONNX Runtime,
             decoding: what ``medner extract --local`` and the CPU ``ner`` Triton model run), 64 notes per call;
triton_cN    a tritonserver on a one-model copy of the repository with that tree's ``model.py`` and code, and the
             tree's ``NerClient`` at ``--concurrency`` requests of 8 notes in flight.

Every round runs both trees, the order alternating round by round; a warm-up pass precedes each timing. Ratios
(this checkout / baseline) are taken within each round, then the median over rounds. Writes
benchmarks/results/hot_path.json and .md (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, latest_version, load_notes, one_model_repository, write_results  # noqa: E402

# Run inside each tree (its medner, clients and model.py): only APIs both trees have.
IN_PROCESS = """
import json, sys, time
from pathlib import Path
from clients.local import LocalNerModel
notes = json.loads(Path(sys.argv[1]).read_text())
model = LocalNerModel(Path(sys.argv[2]), sys.argv[3], threads=1)
batches = [notes[i: i + 64] for i in range(0, len(notes), 64)]
for batch in batches:
    model.extract(batch)
start = time.perf_counter()
for batch in batches:
    model.extract(batch)
print(json.dumps({"notes_per_s": len(notes) / (time.perf_counter() - start)}))
"""
TRITON = """
import json, sys, time
from pathlib import Path
from clients.ner_client import NerClient
from medner.triton import TritonServer
notes = json.loads(Path(sys.argv[1]).read_text())
with TritonServer.on_free_ports(Path(sys.argv[2])) as server:
    with NerClient(server.grpc_url, model=sys.argv[4], concurrency=int(sys.argv[3]), timeout=120) as client:
        client.extract(notes)
        start = time.perf_counter()
        client.extract(notes)
        seconds = time.perf_counter() - start
print(json.dumps({"notes_per_s": len(notes) / seconds}))
"""


def run_in(tree: Path, code: str, *args: str) -> float:
    """Notes/s printed by ``code`` run in a fresh process that imports ``tree``'s packages."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    check = f"import medner, sys; assert medner.__file__.startswith({str(tree)!r}), medner.__file__\n"
    done = subprocess.run([sys.executable, "-c", check + code, *args], cwd=tree, env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])["notes_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=ROOT,
                        help="a checkout of the commit to compare with (default: this one)")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--baseline-repository", type=Path,
                        help="the baseline's model repository, to compare two models (default: --repository)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=["ner"], choices=["ner", "ner_int8"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hot_path.json")
    args = parser.parse_args()

    trees = {"baseline": args.baseline.resolve(), "this": ROOT}
    sources = {"baseline": (args.baseline_repository or args.repository).resolve(), "this": args.repository.resolve()}
    if trees["baseline"] == trees["this"] and sources["baseline"] == sources["this"]:
        parser.error("nothing to compare: pass --baseline (another checkout) or --baseline-repository")
    commits = {name: subprocess.run(["git", "describe", "--always", "--dirty=+changes"], cwd=tree, capture_output=True,
                                    text=True, check=True).stdout.strip() for name, tree in trees.items()}
    variants = [f"{model} {way}" for model in args.models for way in ("in_process", f"triton_c{args.concurrency}")]
    results: dict = {v: {name: [] for name in trees} for v in variants}
    report: dict = {"hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "commits": commits, "repositories": {name: str(path) for name, path in sources.items()},
                    "versions": {name: {m: int(latest_version(path / m).name) for m in args.models}
                                 for name, path in sources.items()},
                    "rounds": args.rounds,
                    "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="medner-hot-path-") as tmp:
        notes_file = Path(tmp) / "notes.json"
        notes = load_notes(args.data_dir)
        notes_file.write_text(json.dumps(notes))
        report["notes"] = len(notes)
        repositories = {(name, model): one_model_repository(sources[name], Path(tmp) / name / model, tree, model)
                        for name, tree in trees.items() for model in args.models}
        for round_index in range(args.rounds):
            order = list(trees) if round_index % 2 == 0 else list(trees)[::-1]
            for name in order:
                for model in args.models:
                    repository = str(repositories[name, model])
                    results[f"{model} in_process"][name].append(
                        round(run_in(trees[name], IN_PROCESS, str(notes_file), repository, model), 1))
                    results[f"{model} triton_c{args.concurrency}"][name].append(round(run_in(
                        trees[name], TRITON, str(notes_file), repository, str(args.concurrency), model), 1))
            print(json.dumps({v: {n: r[-1] for n, r in results[v].items()} for v in variants}), flush=True)
    report["notes_per_s"] = results
    report["ratio_this_over_baseline"] = {
        v: round(statistics.median(t / b for t, b in zip(results[v]["this"], results[v]["baseline"])), 3)
        for v in variants}
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["command"] = " ".join(["python", *sys.argv])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    same_models = sources["baseline"] == sources["this"]
    models = (", ".join(f"{m} v{v}" for m, v in report["versions"]["this"].items()) + " (the same model files for both)"
              if same_models else "; ".join(f"{name}: " + ", ".join(f"{m} v{v}" for m, v in versions.items())
                                            + f" of {sources[name]}" for name, versions in report["versions"].items()))
    lines = [
        "# Serving hot path: this checkout vs a baseline " + ("commit" if same_models else "model"),
        "",
        f"{report['hardware']}; {report['date']}; {models}; "
        f"{report['notes']} BeHealthy test sentences; {args.rounds} rounds, the order alternating; load average "
        f"{report['load_average_start']} at start, {report['load_average_end']} at end.",
        "",
        f"| notes/s (median of rounds) | baseline {commits['baseline']} | this {commits['this']} | ratio this / "
        "baseline (median of per-round ratios) |",
        "| --- | --- | --- | --- |",
        *(f"| {v} | {statistics.median(results[v]['baseline']):.0f} | {statistics.median(results[v]['this']):.0f} "
          f"| {report['ratio_this_over_baseline'][v]} |" for v in variants),
        "",
        f"Command: `{report['command']}`.",
    ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
