"""Bias monitoring, validated: does a group of notes that departs from the others get flagged, and only it?

    python benchmarks/bias_validation.py [--windows 20] [--shift-windows 8] [--model ner_int8] [--out PATH]

Each window holds four groups (clinics) of 100 notes of 3-20 sentences drawn from the dev split (held out of
training and of the reference), profiled by the served model's own pass (``monitoring.features.FeatureTagger``)
and segmented by group as the served model segments them (``monitoring.profiles.segment_views``), then judged by
``monitoring.bias.assess_groups`` (each group against the other three, at the drift check's size-aware bound).

* ``untouched`` windows: every group in distribution. Every flag there is a false one.
* shifted windows: one group (``clinic_d``) transformed, the other three untouched: ``shorthand`` (abbreviations,
  function words and vowels dropped, lower case), ``dropped-diseases`` (80% of disease mentions removed from its
  sentences) and ``headers-vitals`` (another genre: section headers and vitals lines between sentences), the
  transforms of benchmarks/drift_validation.py.

Per group and window: the verdict, the combined score against the rest and its bound, the estimated entity F1
(monitoring.estimation, from the profile) and the true one (strict, against the gold spans).
Writes benchmarks/results/bias_validation.{md,json} (``--out``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, out_option, repository_option, write_results  # noqa: E402
from benchmarks.drift_validation import EPOCH, Scorer, make_notes, pools, progress, true_scores  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "bias_validation"
GROUPS = ("clinic_a", "clinic_b", "clinic_c", "clinic_d")
TARGET = "clinic_d"
SHIFTS = ("untouched", "shorthand", "dropped-diseases", "headers-vitals")
SIZE = "multix100"  # 100 notes of 3-20 sentences per group: the drift check's min_notes


def dropped_diseases(sentence, rng: random.Random):
    """Each disease mention, at 80%, removed from the sentence (a clinic that writes fewer of them)."""
    from medner.data import Sentence
    from medner.spans import labels_to_spans

    keep = [True] * len(sentence.tokens)
    for start, end, label in labels_to_spans(sentence.labels):
        if label == "D" and rng.random() < 0.8:
            keep[start:end] = [False] * (end - start)
    if not any(keep):
        return sentence
    return Sentence(tuple(t for t, k in zip(sentence.tokens, keep) if k),
                    tuple(label for label, k in zip(sentence.labels, keep) if k))


def group_notes(pool: Sequence, shift: str, rng: random.Random) -> dict[str, list]:
    """Each group's notes for one window: ``clinic_d`` under ``shift``, the others untouched."""
    from benchmarks import drift_validation

    notes = {}
    for group in GROUPS:
        if group == TARGET and shift == "dropped-diseases":
            shifted = [dropped_diseases(s, rng) for s in pool]
            notes[group] = make_notes(shifted, "none", SIZE, rng)
        else:
            applied = shift if group == TARGET and shift in drift_validation.SHIFTS else "none"
            notes[group] = make_notes(pool, applied, SIZE, rng)
    return notes


def judge(scorer: Scorer, notes: dict[str, list], thresholds) -> dict[str, dict]:
    from monitoring.bias import assess_groups
    from monitoring.profiles import segment_views

    texts = [n.text for group in GROUPS for n in notes[group]]
    labels = [group for group in GROUPS for _ in notes[group]]
    decoded, rows = scorer.tagger(texts)
    report = assess_groups(segment_views(rows, labels, "ner"), scorer.reference, EPOCH, EPOCH, thresholds)
    entities = iter(d.entities for d in decoded)
    truth = {group: true_scores(notes[group], [next(entities) for _ in notes[group]]) for group in GROUPS}
    return {g.group: {"verdict": g.verdict, "level": g.level, "notes": g.notes,
                      "combined": g.against_rest.get("combined"), "bound": g.against_rest.get("bound"),
                      "top": g.against_rest.get("top"), "estimated_f1": (g.estimate or {}).get("entity_f1"),
                      "true_f1": truth[g.group]["entity_f1"]} for g in report.groups}


def run(args: argparse.Namespace) -> dict:
    from monitoring.drift import DriftThresholds

    scorer = Scorer(args.repository, args.model, args.threads)
    dev = pools(args.data_dir)["dev"]
    thresholds = DriftThresholds()
    plan = [(shift, k) for shift in SHIFTS for k in range(args.windows if shift == "untouched" else args.shift_windows)]
    windows, began = [], time.perf_counter()
    for shift, k in plan:
        seed = args.seed + 1000 * SHIFTS.index(shift) + k
        windows.append({"shift": shift, "seed": seed,
                        "groups": judge(scorer, group_notes(dev, shift, random.Random(seed)), thresholds)})
        progress(len(windows), len(plan), began, "bias")
    return {"command": f"python benchmarks/bias_validation.py{repository_option(args.repository)}"
                       f"{out_option(args.out, OUT)}",
            "hardware": hardware(), "model": args.model,
            "version": scorer.version, "seconds": round(time.perf_counter() - began, 1),
            "min_notes": thresholds.min_notes, "windows": windows}


def report(result: dict) -> list[str]:
    windows = result["windows"]
    untouched = [(w["shift"], g, v) for w in windows for g, v in w["groups"].items()
                 if w["shift"] == "untouched" or g != TARGET]
    false_flags = sum(v["verdict"] == "diverging" for _, _, v in untouched)
    lines = [
        "# Bias monitoring: one group departing from the others", "",
        f"`{result['command']}` (this file is its output; {result['seconds']:.0f} s). Machine: {result['hardware']}. "
        f"Served model `{result['model']}` version {result['version']}, in-process (its own pass and profiles).", "",
        f"Four groups of {result['min_notes']} notes (3-20 dev sentences each) per window; in shifted windows "
        f"`{TARGET}` is transformed and the others are not. Each group is judged against the other three "
        "(`monitoring.bias.assess_groups`).", "",
        f"**Untouched groups flagged: {false_flags} of {len(untouched)}** (every untouched group of every window, "
        f"{sum(w['shift'] == 'untouched' for w in windows)} all-untouched windows included).", "",
        "| window | group | flagged | critical | combined vs rest (mean) | bound (mean) | estimated F1 | true F1 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for shift in SHIFTS:
        chosen = [w for w in windows if w["shift"] == shift]
        for group in GROUPS:
            cells = [w["groups"][group] for w in chosen]
            if not cells:
                continue
            lines.append(
                f"| {shift} ({len(chosen)}) | {group} | {sum(c['verdict'] == 'diverging' for c in cells)} | "
                f"{sum(c['level'] == 'critical' for c in cells)} | {_mean(c['combined'] for c in cells):.3f} | "
                f"{_mean(c['bound'] for c in cells):.3f} | {_mean(c['estimated_f1'] for c in cells):.3f} | "
                f"{_mean(c['true_f1'] for c in cells):.3f} |")
    lines += ["", "Flagged: diverging from the other groups (warning or critical); critical: also an estimated entity "
              "F1 more than the tolerance below the other groups'. Estimated F1 comes from the group's profile only "
              "(no labels); true F1 from the gold spans."]
    return lines


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="ner_int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=20, help="all-untouched windows")
    parser.add_argument("--shift-windows", type=int, default=8, help="windows per transform of clinic_d")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=OUT, help="the results' path, without .md/.json")
    parser.add_argument("--report-only", action="store_true", help="the page again from the results JSON")
    args = parser.parse_args()
    result = json.loads(args.out.with_suffix(".json").read_text()) if args.report_only else run(args)
    write_results(args.out, report(result), result)


if __name__ == "__main__":
    main()
