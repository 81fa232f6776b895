"""The accuracy ablation: each lever of ``medner.experiments.LEVER_GRID`` trained with several seeds on one split,
through the same code as ExperimentFlow's candidates (``medner.experiments.run_candidate``); choices are read on
dev, test is reported. Each (candidate, seed) run is one file, so the ablation resumes where it stopped.

    python benchmarks/accuracy.py run [--only NAME ...] [--seeds 13 14 15]   # trains what is missing
    python benchmarks/accuracy.py report                                    # tables from the run files

Writes benchmarks/results/accuracy/<candidate>-s<seed>.json and benchmarks/results/accuracy.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, hardware_info  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "accuracy"
SEEDS = (13, 14, 15)
HEADLINE = ("entity_f1", "entity_f1_D", "entity_f1_T", "entity_precision_D", "entity_recall_D",
            "entity_precision_T", "entity_recall_T", "entity_f1_relaxed", "token_weighted_f1")


def run_file(name: str, seed: int) -> Path:
    return RUNS / f"{name}-s{seed}.json"


def run(names: list[str], seeds: list[int], data_dir: str | None) -> None:
    from medner.config import data_dir as resolve_data_dir
    from medner.data import prepare_data
    from medner.experiments import LEVER_GRID, parse_grid, run_candidate

    candidates = [c for c in parse_grid(LEVER_GRID) if not names or c.name in names]
    data = prepare_data(resolve_data_dir(data_dir))
    RUNS.mkdir(parents=True, exist_ok=True)
    for candidate in candidates:
        for seed in seeds:
            path = run_file(candidate.name, seed)
            if path.exists():
                continue
            started = time.time()
            result = run_candidate(candidate, data.train, data.dev, data.test, {"seed": seed})
            row = {**result.row(), "seed": seed, "data_version": data.version, "hardware": hardware_info(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
                   "span_edges": span_edges_metrics(result.model_files, data)}
            path.write_text(json.dumps(row, indent=1))
            print(f"{candidate.name} seed {seed}: dev {result.dev['entity_f1']:.4f}, "
                  f"test {result.test['entity_f1']:.4f}"
                  f" (D {result.test['entity_f1_D']:.4f}, T {result.test['entity_f1_T']:.4f}), "
                  f"{result.train_seconds:.0f} s", flush=True)


def span_edges_metrics(model_files: dict[str, bytes], data: object) -> dict[str, dict[str, float]]:
    """Dev and test metrics of a trained model decoded with span edges learned from its train split (the
    decoding lever: it needs no retraining, so every run measures it on its own model)."""
    import tempfile

    from medner.decoding import SpanEdges, decode
    from medner.inference import sentence_log_probs, torch_encoder
    from medner.metrics import evaluate
    from medner.training import files_to_dir, load_model

    edges = SpanEdges.learn((s.tokens, s.labels) for s in data.train)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, model = load_model(files_to_dir(model_files, tmp))
    scores = {}
    for split in ("dev", "test"):
        sentences = getattr(data, split)
        log_probs = sentence_log_probs([s.tokens for s in sentences], tokenizer, torch_encoder(model))
        scores[split] = evaluate([s.labels for s in sentences],
                                 [decode(lp, words=s.tokens, edges=edges) for lp, s in zip(log_probs, sentences)])
    return scores


def report() -> None:
    from medner.experiments import LEVER_GRID
    from medner.labels import ENTITY_TYPES
    from medner.metrics import ERROR_CATEGORIES
    from medner.report import mean_sd

    rows = []
    for item in LEVER_GRID:
        runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob(f"{item['name']}-s[0-9]*.json"))]
        if not runs:
            continue
        params = {k: v for k, v in item.items() if k not in ("name", "kind", "lever")}
        summary = {"name": item["name"], "lever": item.get("lever", ""), "params": params,
                   "seeds": [r["seed"] for r in runs],
                   "train_seconds": [r["train_seconds"] for r in runs],
                   **{f"{split}_{k}": [r[split][k] for r in runs] for split in ("dev", "test") for k in HEADLINE},
                   **{f"{split}_entity_f1_edges": [r["span_edges"][split]["entity_f1"] for r in runs]
                      for split in ("dev", "test")},
                   "test_errors": {f"{c}_{t}": statistics.mean(r["test"][f"errors_{c}_{t}"] for r in runs)
                                   for c in (*ERROR_CATEGORIES, "spurious_in_empty") for t in ENTITY_TYPES}}
        rows.append(summary)

    def held_out(row: dict, key: str) -> str:
        return "not held out" if row["params"].get("train_on_dev") else mean_sd(row[key])

    machines = sorted({hardware(json.loads(p.read_text())["hardware"]) for p in RUNS.glob("*.json")})
    lines = [
        "# Accuracy ablation on BeHealthy", "",
        "Each row: one candidate of `medner.experiments.LEVER_GRID`, mean ± sd over its seeds; choices are read on "
        "**dev**, test is reported. Strict entity F1 (exact boundaries and type), plain Viterbi decoding; the two "
        "*+ edges* columns decode the same models with the span edges learned from train "
        "(`medner.decoding.SpanEdges`). A model trained on train + dev has no held-out dev score.", "",
        "| candidate | lever | seeds | dev F1 | test F1 | dev F1 + edges | test F1 + edges | test F1 D | test F1 T | "
        "test relaxed F1 | test token-weighted F1 | train s (max) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['name']} | {r['lever']} | {len(r['seeds'])} | {held_out(r, 'dev_entity_f1')} | "
          f"{mean_sd(r['test_entity_f1'])} | {held_out(r, 'dev_entity_f1_edges')} | "
          f"{mean_sd(r['test_entity_f1_edges'])} | {mean_sd(r['test_entity_f1_D'])} | "
          f"{mean_sd(r['test_entity_f1_T'])} | {mean_sd(r['test_entity_f1_relaxed'])} | "
          f"{mean_sd(r['test_token_weighted_f1'])} | {max(r['train_seconds']):.0f} |" for r in rows),
        "", "## Precision and recall per type (test, mean ± sd)", "",
        "| candidate | precision D | recall D | precision T | recall T |", "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {r['name']} | {mean_sd(r['test_entity_precision_D'])} | {mean_sd(r['test_entity_recall_D'])} | "
          f"{mean_sd(r['test_entity_precision_T'])} | {mean_sd(r['test_entity_recall_T'])} |" for r in rows),
        "", "## Where the errors are (test, mean count over seeds)", "",
        "Gold entities: exact, boundary (same type, other words), wrong type (same words), both, missed; "
        "predictions overlapping no gold entity: spurious (and those in sentences without any gold entity).", "",
        "| candidate | type | " + " | ".join(c.replace("_", " ") for c in ERROR_CATEGORIES) + " | spurious in empty |",
        "| --- | --- | " + " | ".join("---:" for _ in range(len(ERROR_CATEGORIES) + 1)) + " |",
        *(f"| {r['name']} | {t} | " + " | ".join(f"{r['test_errors'][f'{c}_{t}']:.0f}"
                                                 for c in (*ERROR_CATEGORIES, "spurious_in_empty")) + " |"
          for r in rows for t in ENTITY_TYPES),
        "", "## Parameters", "",
        *(f"- **{r['name']}**: " + (", ".join(f"`{k}={v}`" for k, v in r["params"].items()) or "defaults")
          for r in rows),
        "", f"Hardware: {'; '.join(machines)}. Command: `python benchmarks/accuracy.py run && "
        "python benchmarks/accuracy.py report`.",
    ]
    (RESULTS / "accuracy.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("run", help="train every (candidate, seed) without a run file")
    train.add_argument("--only", nargs="*", default=[], help="candidate names (default: all of LEVER_GRID)")
    train.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    train.add_argument("--data-dir", help="the BeHealthy folder (default: medner.config.data_dir())")
    sub.add_parser("report", help="write benchmarks/results/accuracy.{md,json} from the run files")
    args = parser.parse_args()
    if args.command == "run":
        run(args.only, args.seeds, args.data_dir)
    else:
        report()


if __name__ == "__main__":
    main()
