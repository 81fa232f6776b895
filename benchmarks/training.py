"""Training throughput of a TrainFlow run: sentences per second and minutes per epoch, from the
per-epoch timings the run recorded (its ``history`` artifact), with the device and threads the run
recorded and the hardware of the machine this report is written on (Metaflow does not record a run's host).

    python flows/train_flow.py run          # default config: the run to measure (on this machine)
    python benchmarks/training.py [--run TrainFlow/ID]

Writes benchmarks/results/training.{md,json}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "training"
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a TrainFlow run pathspec (default: the latest successful run)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from metaflow import Flow, Run

    from medner.config import TrainConfig

    run = Run(args.run) if args.run else Flow("TrainFlow").latest_successful_run
    history, config, metrics = run.data.history, run.data.config, run.data.metrics
    device, threads = (getattr(run.data, name, None) for name in ("train_device", "train_threads"))
    defaults = TrainConfig().to_dict()
    changed = {k: v for k, v in config.items() if defaults.get(k) != v}
    rates = [row["train_sentences_per_second"] for row in history]
    minutes = [row["epoch_seconds"] / 60 for row in history]
    summary = {"run": run.pathspec, "hardware": hardware(), "date": time.strftime("%Y-%m-%d"),
               "run_finished_at": str(run.finished_at), "config": config, "config_changed_from_default": changed,
               "train_device": device, "train_threads": threads, "epochs": history,
               "median_sentences_per_s": statistics.median(rates),
               "median_minutes_per_epoch": statistics.median(minutes),
               "train_seconds": metrics.get("train_seconds"), "test_entity_f1": metrics.get("entity_f1")}
    described = ("the default TrainFlow config" if not changed else
                 "TrainFlow config with " + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + " (else default)")
    recorded = (f"The run recorded training on `{device}` with {threads} torch thread(s)" if device else
                "The run did not record its device or thread count")
    lines = [
        f"# Training throughput ({summary['date']})", "",
        f"Run `{run.pathspec}` (finished {run.finished_at}), {described}: base model "
        f"{config.get('base_model') or 'all-MiniLM-L6-v2 (the default)'}, batch {config['batch_size']}, "
        f"{config['epochs']} epochs, bf16 {config['bf16']}, torch threads {config['threads'] or 'all'}. "
        f"{recorded}; Metaflow does not record the host. This report was written on: {summary['hardware']}. "
        "Epoch time excludes the dev evaluation after each epoch; the whole training includes it.", "",
        "| epoch | sentences/s | minutes | train loss | dev entity F1 |", "| ---: | ---: | ---: | ---: | ---: |",
        *(f"| {row['epoch']} | {row['train_sentences_per_second']:.1f} | {row['epoch_seconds'] / 60:.2f} | "
          f"{row['train_loss']:.3f} | {row['dev_entity_f1']:.4f} |" for row in history),
        "", f"Median: {summary['median_sentences_per_s']:.1f} sentences/s, "
        f"{summary['median_minutes_per_epoch']:.2f} minutes per epoch; whole training "
        f"{(summary['train_seconds'] or 0) / 60:.1f} minutes ({summary['train_seconds'] or 0:.0f} s); "
        f"test entity F1 {summary['test_entity_f1']:.4f}.",
        "", f"Command: `python benchmarks/training.py{' --run ' + args.run if args.run else ''}"
        f"{'' if args.out == DEFAULT_OUT else ' --out ' + str(args.out.resolve().relative_to(ROOT))}`.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, lines, summary)


if __name__ == "__main__":
    main()
