"""Model quality as the runs recorded it: a TrainFlow run's test metrics (its decoding and argmax on the same
model, per type, relaxed, token-weighted), the epoch chosen on dev, its data (split sizes, the DataFlow
run's train/test leakage count), the export gates of every model version exported from it (their
``lineage.json``), and an ExperimentFlow run's comparison table when the datastore has one.

    python benchmarks/model_report.py [--run TrainFlow/ID] [--experiment-run ExperimentFlow/ID] \\
        [--repository model_repository]

Defaults: the latest successful TrainFlow and ExperimentFlow runs. Nothing is measured here: every figure is
read from a run's artifacts or a version's lineage. Writes benchmarks/results/model.{md,json} (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train_run(pathspec: str | None) -> dict[str, Any]:
    """What a TrainFlow run recorded: config, metrics (and argmax on the same model), epochs, data."""
    from metaflow import Flow, Run

    from medner.config import TrainConfig

    run = Run(pathspec) if pathspec else Flow("TrainFlow").latest_successful_run
    data = run.data
    defaults = TrainConfig().to_dict()
    found: dict[str, Any] = {
        "run": run.pathspec, "finished_at": str(run.finished_at), "config": data.config,
        "config_changed_from_default": {k: v for k, v in data.config.items() if defaults.get(k) != v},
        "metrics": data.metrics, "metrics_argmax": getattr(data, "metrics_argmax", None),
        "best_epoch": getattr(data, "best_epoch", None), "epochs_run": len(data.history),
        "dev_entity_f1_by_epoch": [row["dev_entity_f1"] for row in data.history],
        "train_device": getattr(data, "train_device", None), "train_threads": getattr(data, "train_threads", None),
        "data_version": data.data_version, "data_source": data.data_source,
        "sentences": {"train": len(data.train_data), "dev": len(data.dev_data), "test": len(data.test_data)},
        "leaked_test_sentences": None,
    }
    if str(data.data_source).startswith("DataFlow/"):
        found["leaked_test_sentences"] = getattr(Run(data.data_source).data, "leaked_test_sentences", None)
    return found


def exports(repository: Path, source: str) -> list[dict[str, Any]]:
    """The export gates of every version in ``repository`` whose lineage names ``source`` as its run."""
    from medner.registry import champion, versions

    rows = []
    serving = champion(repository)
    for entry in versions(repository):
        record = entry.lineage
        if record.get("source") != source:
            continue
        gates = record.get("gates", {})
        rows.append({"version": entry.version, "exported_at": record.get("exported_at"), "models": entry.models,
                     "champion": entry.version == serving, "decode": record.get("decode"),
                     "entity_f1_fp32": (record.get("metrics_fp32") or {}).get("entity_f1"),
                     "entity_f1_int8": (record.get("metrics_int8") or {}).get("entity_f1"),
                     "parity": gates.get("parity"), "int8_quality": gates.get("int8_quality")})
    return rows


def experiment_run(pathspec: str | None) -> dict[str, Any] | None:
    """An ExperimentFlow run's comparison rows and challenger (None: no such run in this datastore)."""
    from metaflow import Flow, Run
    from metaflow.exception import MetaflowNotFound

    try:
        run = Run(pathspec) if pathspec else Flow("ExperimentFlow").latest_successful_run
    except MetaflowNotFound:
        return None
    if run is None:
        return None
    return {"run": run.pathspec, "finished_at": str(run.finished_at), "challenger": run.data.challenger,
            "data_version": run.data.data_version, "results": run.data.results}


def render(report: dict[str, Any]) -> str:
    train = report["train"]
    m, argmax, config = train["metrics"], train["metrics_argmax"], train["config"]
    changed = train["config_changed_from_default"]
    described = ("the default config" if not changed else
                 "the default config except " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
    sizes = train["sentences"]
    leak = ("" if train["leaked_test_sentences"] is None else
            f" DataFlow's leakage check (run `{train['data_source']}`) found {train['leaked_test_sentences']} of the "
            f"{sizes['test']:,} test sentences also in train.")
    lines = [
        f"# Model report ({report['date']})", "",
        f"TrainFlow run `{train['run']}` (finished {train['finished_at']}), {described}: base model "
        f"{config.get('base_model') or 'the default (all-MiniLM-L6-v2)'}, learning rate {config['learning_rate']:g}, "
        f"{config['epochs']} epochs at most, decoding {config['decode']}, trained on `{train['train_device']}`. "
        f"Data version `{train['data_version']}` from `{train['data_source']}`: {sizes['train']:,} train, "
        f"{sizes['dev']:,} dev, {sizes['test']:,} test sentences.{leak}", "",
        "| metric (test split) | value |", "| --- | ---: |",
        f"| entity F1 (seqeval, strict IOB2), {config['decode']} decoding | {m['entity_f1']:.4f} |",
        f"| entity precision / recall | {m['entity_precision']:.4f} / {m['entity_recall']:.4f} |",
        f"| entity F1, D / T | {m['entity_f1_D']:.4f} / {m['entity_f1_T']:.4f} |",
    ]
    if argmax:
        lines.append(f"| entity F1, argmax decoding (same model) | {argmax['entity_f1']:.4f} |")
    lines += [
        f"| relaxed (overlap) entity F1 | {m['entity_f1_relaxed']:.4f} |",
        f"| token-level weighted F1 | {m['token_weighted_f1']:.4f} |",
        f"| epoch chosen on dev | {train['best_epoch']} of {train['epochs_run']} run (dev entity F1 by epoch: "
        + ", ".join(f"{f:.4f}" for f in train["dev_entity_f1_by_epoch"]) + ") |",
        f"| training time (dev evaluation included) | {m.get('train_seconds', float('nan')):.0f} s |",
    ]
    if argmax and config["decode"] != "argmax":
        lines += ["", f"{config['decode']} decoding vs argmax on the same model: "
                  f"{100 * (m['entity_f1'] - argmax['entity_f1']):+.1f} entity-F1 points."]
    lines += ["", "## Export gates (versions exported from this run)", ""]
    if not report["exports"]:
        lines.append(f"No version in `{report['repository']}` names this run in its lineage.")
    else:
        lines += ["| version | exported | parity: max abs logit diff (tolerance) | sentences with different "
                  "labels | fp32 ONNX entity F1 | INT8 entity F1 (vs fp32) | INT8 published | champion |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |"]
        for row in report["exports"]:
            parity, int8 = row["parity"] or {}, row["int8_quality"] or {}
            f32, i8 = row["entity_f1_fp32"], row["entity_f1_int8"]
            lines.append(
                f"| {row['version']} | {row['exported_at']} | {parity.get('max_abs_logit_diff', float('nan')):.1e} "
                f"({parity.get('tolerance', float('nan')):g}) | {parity.get('sentences_with_different_labels')} of "
                f"{parity.get('sentences')} | {f32:.4f} | "
                + (f"{i8:.4f} ({100 * (i8 - f32):+.2f} points; gate: at most {100 * int8['max_drop']:.1f} below)"
                   if i8 is not None and "max_drop" in int8 else "–")
                + f" | {'yes' if int8.get('published') else 'no'} | {'yes' if row['champion'] else 'no'} |")
    lines += ["", "## ExperimentFlow", ""]
    experiment = report["experiment"]
    if experiment is None:
        lines.append("No successful ExperimentFlow run in this Metaflow datastore.")
    else:
        lines += [f"Run `{experiment['run']}` (finished {experiment['finished_at']}), data version "
                  f"`{experiment['data_version']}`; the challenger is chosen on dev.", "",
                  "| candidate | dev entity F1 | test entity F1 | relaxed | token-weighted | train s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in sorted(experiment["results"], key=lambda r: -r["dev"]["entity_f1"]):
            mark = " (challenger)" if row["name"] == experiment["challenger"] else ""
            test = row["test"]
            lines.append(f"| {row['name']}{mark} | {row['dev']['entity_f1']:.4f} | {test['entity_f1']:.4f} | "
                         f"{test['entity_f1_relaxed']:.4f} | {test['token_weighted_f1']:.4f} | "
                         f"{row['train_seconds']:.0f} |")
    lines += ["", f"Command: `{report['command']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a TrainFlow run pathspec (default: the latest successful run)")
    parser.add_argument("--experiment-run", help="an ExperimentFlow run pathspec (default: the latest successful)")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "model")
    args = parser.parse_args()

    train = train_run(args.run)
    report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", "benchmarks/model_report.py",
                                                                       *sys.argv[1:]]),
              "repository": str(args.repository), "train": train,
              "exports": exports(args.repository, train["run"]), "experiment": experiment_run(args.experiment_run)}
    text = render(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
