"""The serving tokenizer: ``transformers`` AutoTokenizer against ``medner.inference.WordPieceTokenizer``
(the same ``tokenizer.json`` read with the ``tokenizers`` library alone), side by side in one run.

    python benchmarks/tokenizer.py [--rounds 5]

load      seconds for a fresh Python process to import what it needs and load the tokenizer of the newest
          ``ner`` version: what every Triton model instance, ``medner extract --local`` and every promotion's
          smoke test pay at start. The two variants alternate process by process.
tokenize  notes/s of ``tokenize_notes`` (the hot path's first stage) over the BeHealthy test sentences, in
          batches of 64 notes, the two variants alternating batch by batch in one process.
Both variants must give identical windows (ids, masks, word layouts) for every note, or the script fails.
Ratios are taken within each round, then the median over rounds. Writes benchmarks/results/tokenizer.json
and .md (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import chunks, hardware, latest_version, load_notes, write_results  # noqa: E402
from medner.inference import TokenizedBatch  # noqa: E402

LOADERS = {
    "transformers": "from transformers import AutoTokenizer; AutoTokenizer.from_pretrained({folder!r})",
    "tokenizers": "from medner.inference import WordPieceTokenizer; WordPieceTokenizer.from_dir({folder!r})",
}


def load_seconds(variant: str, folder: Path) -> float:
    """Wall seconds of a fresh interpreter that imports and loads the ``variant`` tokenizer, then exits."""
    code = LOADERS[variant].format(folder=str(folder))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    return time.perf_counter() - start


def same_windows(a: TokenizedBatch, b: TokenizedBatch) -> bool:
    return (np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.attention_mask, b.attention_mask)
            and all(x.words == y.words and np.array_equal(x.word_window, y.word_window)
                    and np.array_equal(x.word_position, y.word_position) and x.pieces == y.pieces
                    for x, y in zip(a.notes, b.notes, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tokenizer.json")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from medner.inference import WordPieceTokenizer, tokenize_notes

    folder = latest_version(args.repository / "ner")
    notes = load_notes(args.data_dir)
    tokenizers = {"transformers": AutoTokenizer.from_pretrained(folder),
                  "tokenizers": WordPieceTokenizer.from_dir(folder)}
    batches = chunks(notes, 64)
    for batch in batches:  # the same windows, or nothing to compare
        if not same_windows(*(tokenize_notes(t, batch) for t in tokenizers.values())):
            raise SystemExit("the two tokenizers give different windows: not a like-for-like comparison")

    report: dict = {"hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "ner_version": int(folder.name), "notes": len(notes), "rounds": args.rounds,
                    "identical_windows": True, "load_average_start": [round(x, 2) for x in os.getloadavg()],
                    "load_seconds": {v: [] for v in LOADERS}, "tokenize_notes_per_s": {v: [] for v in LOADERS}}
    for _ in range(args.rounds):
        for variant in LOADERS:
            report["load_seconds"][variant].append(round(load_seconds(variant, folder), 3))
        spent = dict.fromkeys(tokenizers, 0.0)
        for batch in batches:
            for variant, tokenizer in tokenizers.items():
                start = time.perf_counter()
                tokenize_notes(tokenizer, batch)
                spent[variant] += time.perf_counter() - start
        for variant in tokenizers:
            report["tokenize_notes_per_s"][variant].append(round(len(notes) / spent[variant], 1))
        print(json.dumps({k: {v: x[-1] for v, x in report[k].items()}
                          for k in ("load_seconds", "tokenize_notes_per_s")}), flush=True)
    load, speed = report["load_seconds"], report["tokenize_notes_per_s"]
    report["load_speedup"] = round(statistics.median(
        t / w for t, w in zip(load["transformers"], load["tokenizers"])), 2)
    report["tokenize_speedup"] = round(statistics.median(
        w / t for w, t in zip(speed["tokenizers"], speed["transformers"])), 3)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["command"] = " ".join(["python", *sys.argv])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    median = {k: {v: statistics.median(x) for v, x in report[k].items()} for k in ("load_seconds",
                                                                                    "tokenize_notes_per_s")}
    lines = [
        "# Serving tokenizer: transformers vs tokenizers",
        "",
        f"{report['hardware']}; {report['date']}; ner v{report['ner_version']}; {len(notes)} BeHealthy test "
        f"sentences; {args.rounds} rounds; load average {report['load_average_start']} at start, "
        f"{report['load_average_end']} at end. Windows identical for every note: {report['identical_windows']}.",
        "",
        "| | transformers AutoTokenizer | WordPieceTokenizer (tokenizers) | ratio (median of rounds) |",
        "| --- | --- | --- | --- |",
        f"| fresh process: import + load, s (median) | {median['load_seconds']['transformers']:.2f} | "
        f"{median['load_seconds']['tokenizers']:.2f} | {report['load_speedup']}x faster |",
        f"| tokenize_notes, notes/s (median) | {median['tokenize_notes_per_s']['transformers']:.0f} | "
        f"{median['tokenize_notes_per_s']['tokenizers']:.0f} | {report['tokenize_speedup']}x |",
        "",
        f"Command: `{report['command']}`.",
    ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
