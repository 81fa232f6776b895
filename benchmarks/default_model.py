"""The default TrainFlow over several seeds: accuracy as mean ± sd, not one run's luck.

    python benchmarks/default_model.py run [--seeds 13 14 15] [--repository model_repository]
    python benchmarks/default_model.py report [--before TrainFlow/ID | REV:benchmarks/results/default_model.json]

``run`` starts ``python flows/train_flow.py run --seed N`` for each seed (default configuration otherwise; the
first seed's run also exports to ``--repository`` when given), tagged ``default-model-seeds``. ``report`` reads the
latest successful tagged run of each seed (config, metrics, training time, error counts), so every figure comes
from what the runs recorded; ``--before`` names the previous default, for the error breakdown before and after:
an older TrainFlow run, whose stored model is re-scored on its test split with today's evaluation, or a
default_model.json this script wrote then (its runs' mean), as a path or as ``REV:PATH`` in this git repository
(``8282dc8:benchmarks/results/default_model.json``). Writes benchmarks/results/default_model.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, write_results  # noqa: E402

TAG = "default-model-seeds"
SEEDS = (13, 14, 15)
METRICS = ("entity_f1", "entity_precision", "entity_recall", "entity_f1_D", "entity_precision_D", "entity_recall_D",
           "entity_f1_T", "entity_precision_T", "entity_recall_T", "entity_f1_relaxed", "token_weighted_f1")


def run(seeds: list[int], repository: str) -> None:
    for index, seed in enumerate(seeds):
        command = [sys.executable, str(ROOT / "flows" / "train_flow.py"), "run", "--tag", TAG, "--seed", str(seed)]
        if repository and index == 0:
            command += ["--repository", repository]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def tagged_runs() -> dict[int, object]:
    """The latest successful tagged run of each seed."""
    from metaflow import Flow

    latest: dict[int, object] = {}
    for run in Flow("TrainFlow").runs(TAG):
        if run.successful and run.data.config["seed"] not in latest:
            latest[run.data.config["seed"]] = run
    return dict(sorted(latest.items()))


def before_metrics(before: str) -> dict:
    """The previous default's test metrics (error counts included): an older TrainFlow run's stored model re-scored
    on its test split with today's evaluation, or the mean of the runs of an earlier default_model.json."""
    if before.endswith(".json"):
        text = (Path(before).read_text() if Path(before).exists() else
                subprocess.run(["git", "show", before], cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        runs = json.loads(text)["runs"]
        return {key: statistics.mean(r["metrics"][key] for r in runs) for key in runs[0]["metrics"]}
    from medner.runs import all_namespaces, get_run
    from medner.steps import evaluate_test_split

    with all_namespaces():  # the previous default may have been another user's run
        run = get_run(before)
        return evaluate_test_split(run.data.model_files, run.data.test_data, run.data.config["decode"]).metrics


def report(before: str) -> None:
    from medner.config import TrainConfig
    from medner.labels import ENTITY_TYPES
    from medner.metrics import ERROR_CATEGORIES
    from medner.report import mean_sd

    runs = tagged_runs()
    defaults = {k: v for k, v in TrainConfig().to_dict().items() if k != "seed"}
    rows = []
    for seed, flow_run in runs.items():
        config = flow_run.data.config
        changed = {k: v for k, v in config.items() if k != "seed" and k in defaults and defaults[k] != v}
        rows.append({"run": flow_run.pathspec, "seed": seed, "changed_from_default": changed,
                     "metrics": flow_run.data.metrics, "best_epoch": flow_run.data.best_epoch,
                     "train_seconds": flow_run.data.train_seconds, "device": flow_run.data.train_device})
    if not rows:
        raise SystemExit(f"no successful TrainFlow run tagged {TAG}: run `python benchmarks/default_model.py run`")
    values = {m: [r["metrics"][m] for r in rows] for m in METRICS}
    summary = {"hardware": hardware(), "runs": rows, "mean": {m: statistics.mean(v) for m, v in values.items()},
               "sd": {m: statistics.stdev(v) if len(v) > 1 else 0.0 for m, v in values.items()}}
    categories = (*ERROR_CATEGORIES, "spurious_in_empty")
    previous = before_metrics(before) if before else None
    summary["before"] = {"run": before, "metrics": previous} if previous else None
    lines = [
        "# The default TrainFlow over seeds", "",
        f"{len(rows)} runs of `python flows/train_flow.py run --seed N` (tag `{TAG}`), each the latest successful "
        "one of its seed; test split, strict entity F1 (mean ± sd over the runs). Configuration differences from "
        "today's defaults: " + ("; ".join(f"{r['run']}: {r['changed_from_default']}" for r in rows
                                          if r["changed_from_default"]) or "none") + ".", "",
        "| | all | D | T |", "| --- | ---: | ---: | ---: |",
        *(f"| {name} | " + " | ".join(mean_sd(values[f"entity_{m}{suffix}"]) for suffix in ("", "_D", "_T")) + " |"
          for name, m in (("entity F1", "f1"), ("precision", "precision"), ("recall", "recall"))),
        f"| relaxed (overlap) F1 | {mean_sd(values['entity_f1_relaxed'])} | | |",
        f"| token-weighted F1 | {mean_sd(values['token_weighted_f1'])} | | |", "",
        "| run | seed | test F1 | D | T | best epoch | training s | device |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(f"| {r['run']} | {r['seed']} | {r['metrics']['entity_f1']:.4f} | {r['metrics']['entity_f1_D']:.4f} | "
          f"{r['metrics']['entity_f1_T']:.4f} | {r['best_epoch']} | {r['train_seconds']:.0f} | {r['device']} |"
          for r in rows), "",
        "Where the errors are (test, mean count over the runs): gold entities exact, boundary (same type, other "
        "words), wrong type (same words), both, missed; predictions overlapping no gold entity: spurious (and "
        "those in sentences without any gold entity).", "",
        "| run | type | " + " | ".join(c.replace("_", " ") for c in categories) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in categories) + " |",
        *(f"| before: {before} | {t} | " + " | ".join(f"{previous[f'errors_{c}_{t}']:.0f}" for c in categories)
          + " |" for t in ENTITY_TYPES if previous),
        *(f"| these runs (mean) | {t} | "
          + " | ".join(f"{statistics.mean(r['metrics'][f'errors_{c}_{t}'] for r in rows):.0f}" for c in categories)
          + " |" for t in ENTITY_TYPES),
        *(["", f"Before: {before}, " + ("the mean of its runs" if before.endswith(".json") else
                                        "re-scored now on its own test split")
           + f": entity F1 {previous['entity_f1']:.4f} (D {previous['entity_f1_D']:.4f}, T "
           f"{previous['entity_f1_T']:.4f})."] if previous else []),
        "", f"Written on {summary['hardware']} (Metaflow does not record a run's host). Command: "
        "`python benchmarks/default_model.py run && python benchmarks/default_model.py report"
        + (f" --before {before}" if before else "") + "`.",
    ]
    out = ROOT / "benchmarks" / "results" / "default_model"
    write_results(out, lines, summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("run", help="one default TrainFlow run per seed")
    start.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    start.add_argument("--repository", default="", help="the first seed's run exports a version here")
    done = sub.add_parser("report", help="write benchmarks/results/default_model.{md,json} from the tagged runs")
    done.add_argument("--before", default="", help="the previous default, to compare the error breakdown with: "
                      "a TrainFlow run, or a default_model.json written then (a path, or REV:PATH in git)")
    args = parser.parse_args()
    if args.command == "run":
        run(args.seeds, args.repository)
    else:
        report(args.before)


if __name__ == "__main__":
    main()
