"""Drift simulation: with the product's defaults, does ``monitoring.drift`` stay quiet on in-distribution
traffic however it is packaged into notes, and catch real shifts?

    python benchmarks/drift_simulation.py [--model ner_int8] [--window-notes 100]

1. Reference: the one ``medner monitor check`` uses by default, ``reference_profile.bin`` of the serving
   version (``monitoring.service.default_reference``), as ``medner export`` wrote it; nothing is built here.
2. Traffic: in-distribution notes are dev-split sentences (held out of training, seed-13 10% of train as
   TrainFlow carves it, and not in the reference, which export builds from the test split), as notes of 3-20
   sentences (``in``) or of one sentence (``in-1``). A multi-sentence note is written as prose (each sentence
   ends with ``.``, which the corpus sentences lack) or one sentence per line, half each. Shifts, in notes of
   3-20 sentences:
   * ``genre``      everyday non-medical English (news, travel, cooking) from templates written here (prose);
   * ``shorthand``  dev sentences as hurried clinical shorthand: function words dropped, common clinical
                    abbreviations, interior vowels dropped from long words, lower case (one per line);
   * ``admin``      clinic administration notes with no medical content (scheduling, billing, contact) (prose).
3. Timeline: ``--in-windows`` in-distribution windows of multi-sentence notes, ``--single-windows`` of
   one-sentence notes, then each shift for ``--shift-windows`` windows followed by ``--recovery-windows``
   in-distribution windows. Each window is profiled (``monitoring.features.FeatureTagger``, the code the served model
   runs, and ``monitoring.profiles``) into a profile store and checked with ``monitoring.service.assess`` and
   ``DriftThresholds()``, the defaults ``medner monitor check`` uses (their noise curve comes from
   ``benchmarks/drift_validation.py calibrate``; that script also measures levels on labelled shifts).

Outputs: benchmarks/results/drift_simulation.{md,json,png}; every sentence of the page is computed from the run.
Passes when: >= 20 multi-sentence in-distribution windows, 0 false alarms on any in-distribution window, each
shift detected (level >= warning) within 2 windows of its start.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.common import repository_option  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # simulated windows are one hour apart from here

# --- constructed traffic -------------------------------------------------------------------------------

_GENRE = {
    "subject": ["The city council", "A local bakery", "The football team", "Our neighbours", "The museum",
                "A small airline", "The new library", "Tourists from Spain", "The school orchestra", "The mayor",
                "A software company", "The train operator", "Two students", "The village market", "My sister"],
    "verb": ["announced plans for", "celebrated the opening of", "complained about", "spent the weekend at",
             "postponed", "voted against", "shared photos of", "raised money for", "wrote a review of",
             "is looking forward to", "organised a tour of", "cancelled"],
    "object": ["the summer festival", "a new bicycle lane", "the old harbour", "a chocolate cake recipe",
               "the championship final", "a weekend trip to the mountains", "the renovated town hall",
               "a jazz concert in the park", "cheaper train tickets", "the autumn book fair",
               "a garden full of tomatoes", "the delayed flight to Lisbon", "a documentary about whales"],
    "tail": ["after heavy rain on Tuesday.", "despite the long queues.", "to the delight of visitors.",
             "according to the morning newspaper.", "before the end of the month.", "with help from volunteers.",
             "while prices kept rising.", "during the holiday season.", "for the third year in a row.", "."],
}
_ADMIN = [
    "Called to reschedule the appointment from {day} to {day2} at {hour}.",
    "Left a voicemail about the missing insurance form; will call back on {day}.",
    "Billing code updated and invoice {num} sent to the accounts office.",
    "Front desk confirmed the new mailing address and phone number on file.",
    "Parking validation requested for the visit on {day}; approved by reception.",
    "Copy of the records release form scanned and filed under document {num}.",
    "Transport booked for {day} morning; driver to arrive at {hour}.",
    "Interpreter requested for the {day} visit; agency confirmed availability.",
    "Payment plan of {num} dollars per month agreed with the billing department.",
    "Appointment reminder sent by text message; no reply yet.",
    "Referral letter faxed to the external office and receipt confirmed at {hour}.",
    "Room {num} reserved for the team meeting on {day} afternoon.",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
_STOP = {"the", "a", "an", "of", "to", "and", "in", "with", "was", "were", "is", "are", "for", "that", "this",
         "by", "on", "at", "as", "be", "been", "which", "from", "these", "there", "it", "or", "than"}
_ABBREVIATIONS = {"patient": "pt", "patients": "pts", "treatment": "tx", "treatments": "tx", "therapy": "tx",
                  "diagnosis": "dx", "history": "hx", "without": "w/o", "years": "yrs", "weeks": "wks",
                  "increase": "incr", "increased": "incr", "decrease": "decr", "decreased": "decr",
                  "significant": "sig", "significantly": "sig", "approximately": "approx", "disease": "dz",
                  "infection": "inf", "surgery": "surg", "medication": "med", "medications": "meds",
                  "respectively": "resp", "months": "mos", "blood": "bld", "pressure": "pr", "cancer": "ca"}


def genre_sentence(rng: random.Random) -> str:
    """One everyday-English sentence from the templates above."""
    parts = [rng.choice(_GENRE[k]) for k in ("subject", "verb", "object", "tail")]
    text = " ".join(parts[:3]) + ("." if parts[3] == "." else " " + parts[3])
    return text.replace(" .", ".")


def admin_sentence(rng: random.Random) -> str:
    """One clinic-administration sentence (no medical content)."""
    day, day2 = rng.sample(_DAYS, 2)
    return rng.choice(_ADMIN).format(day=day, day2=day2, hour=f"{rng.randint(8, 17)}:{rng.choice(['00', '30'])}",
                                     num=rng.randint(10, 9999))


def shorthand(tokens: Sequence[str], rng: random.Random) -> str:
    """A sentence as clinical shorthand: function words dropped, abbreviations, vowels dropped, lower case."""
    words = []
    for token in tokens:
        low = token.lower()
        if low in _STOP or (len(low) == 1 and not low.isalnum()):
            continue
        if low in _ABBREVIATIONS:
            low = _ABBREVIATIONS[low]
        elif len(low) > 5 and low.isalpha() and rng.random() < 0.7:
            low = low[0] + re.sub(r"[aeiou]", "", low[1:-1]) + low[-1]
        words.append(low)
    return " ".join(words) or "nad"


PACKAGING = {"in": ("prose", "lines"), "in-1": ("prose",), "genre": ("prose",), "admin": ("prose",),
             "shorthand": ("lines",)}  # how each kind of note joins its sentences
MULTI = (3, 20)  # sentences per multi-sentence note


@dataclass
class Traffic:
    """Note factories: ``notes(phase, n, rng)`` for the in-distribution and shifted phases."""

    source: list[list[str]]  # in-distribution sentences (tokens): the dev split

    def sentence(self, kind: str, rng: random.Random) -> str:
        if kind in ("in", "in-1"):
            return " ".join(rng.choice(self.source))
        if kind == "genre":
            return genre_sentence(rng)
        if kind == "shorthand":
            return shorthand(rng.choice(self.source), rng)
        if kind == "admin":
            return admin_sentence(rng)
        raise ValueError(f"unknown traffic kind {kind!r}")

    def note(self, kind: str, rng: random.Random) -> str:
        count = 1 if kind == "in-1" else rng.randint(*MULTI)
        sentences = [self.sentence(kind, rng) for _ in range(count)]
        if rng.choice(PACKAGING[kind]) == "lines":
            return "\n".join(sentences)
        return " ".join(s if s[-1] in ".!?" else f"{s} ." for s in sentences)  # the corpus' spacing

    def notes(self, kind: str, n: int, rng: random.Random) -> list[str]:
        return [self.note(kind, rng) for _ in range(n)]


def in_process_featurizer(repository: Path, model: str, version_dir: Path, threads: int
                          ) -> Callable[[list[str]], np.ndarray]:
    from medner.inference import NerPipeline
    from medner.triton_control import config_parameters
    from monitoring.features import FeatureTagger

    pipeline = NerPipeline(version_dir, config_parameters(repository / model / "config.pbtxt"), threads)
    tagger = FeatureTagger(pipeline)
    return lambda notes: tagger(notes)[1]


# --- the simulation ---------------------------------------------------------------------------------------

@dataclass
class Window:
    index: int
    phase: str  # "in", "in-1" or a shift kind
    start: datetime
    notes: int = 0
    sentences: int = 0
    level: str = "none"
    combined: float = 0.0
    bound: float = 0.0
    estimated_f1: float | None = None
    scores: dict[str, float] | None = None


def profile_window(store: Path, model: str, start: datetime, rows: np.ndarray) -> None:
    from monitoring.profile_store import window_name, write_view
    from monitoring.profiles import profile_rows

    write_view(profile_rows(rows, start), store / model / f"{window_name(start.timestamp())}_sim.bin")


def run(args: argparse.Namespace) -> dict:
    from medner.config import data_dir as resolve_data_dir
    from medner.data import read_behealthy, split_dev
    from monitoring.drift import DriftThresholds, has_sentence_rows, note_count, sentence_count
    from monitoring.policy import isoformat
    from monitoring.profile_store import read_profile
    from monitoring.service import assess, default_reference, read_window

    corpus = read_behealthy(resolve_data_dir(args.data_dir))
    _, dev = split_dev(corpus["train"], 0.1, 13)  # TrainFlow's split: dev is held out of training
    traffic = Traffic([list(s.tokens) for s in dev])
    reference = Path(default_reference(args.repository, args.model))  # what `medner monitor check` reads
    if not Path(reference).is_file():
        raise SystemExit(f"no reference profile at {reference}: run `medner export`")
    reference_view = read_profile(reference)
    if not has_sentence_rows(reference_view):
        raise SystemExit(f"{reference} has one row per note (exported before per-sentence profiles): re-export")
    work = Path(tempfile.mkdtemp(prefix="drift-sim-"))
    store = work / "profiles"
    timings: dict[str, float] = {}
    try:
        featurize = in_process_featurizer(args.repository, args.model, reference.parent, args.threads)
        thresholds = DriftThresholds()

        phases = ["in"] * args.in_windows + ["in-1"] * args.single_windows
        for shift in args.shifts:
            phases += [shift] * args.shift_windows + ["in"] * args.recovery_windows
        windows = [Window(i, phase, EPOCH + timedelta(hours=i)) for i, phase in enumerate(phases)]

        began = time.perf_counter()
        for window in windows:
            notes = traffic.notes(window.phase, args.window_notes, random.Random(args.seed + window.index))
            profile_window(store, args.model, window.start, featurize(notes))
        timings["traffic_s"] = time.perf_counter() - began

        for window in windows:  # exactly as `medner monitor check` does: merge the window's profiles, compare
            read = read_window(str(store), args.model, reference=str(reference), start=isoformat(window.start),
                               end=isoformat(window.start + timedelta(hours=1)))
            report = assess(read, thresholds)
            window.notes, window.sentences = report.counts["notes"], report.counts.get("sentences", 0)
            window.level, window.combined, window.scores = report.level, report.combined or 0.0, report.scores
            window.bound = report.warning_bound or 0.0
            window.estimated_f1 = report.estimate["entity_f1"] if report.estimate else None
        result = summarise(args, windows, thresholds, timings)
        result["reference"] = {"path": str(reference.relative_to(args.repository.parent))
                               if reference.is_relative_to(args.repository.parent) else str(reference),
                               "notes": note_count(reference_view), "sentences": sentence_count(reference_view)}
        result["traffic_sentences"] = {"split": "dev", "distinct": len(dev)}
        return {"version": int(reference.parent.name), **result}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarise(args: argparse.Namespace, windows: list[Window], thresholds, timings: dict[str, float]) -> dict:
    in_windows = [w for w in windows if w.phase in ("in", "in-1")]
    false_alarms = [w.index for w in in_windows if w.level != "none"]
    packaging = {}
    for phase in ("in", "in-1"):
        own = [w for w in windows if w.phase == phase]
        if own:
            packaging[phase] = {"windows": len(own), "false_alarms": sum(w.level != "none" for w in own),
                                "combined_max": round(max(w.combined for w in own), 4),
                                "combined_mean": round(statistics.mean(w.combined for w in own), 4),
                                "notes_per_window": round(statistics.mean(w.notes for w in own), 1),
                                "sentences_per_window": round(statistics.mean(w.sentences for w in own), 1)}
    detection = {}
    for shift in args.shifts:
        shifted = [w for w in windows if w.phase == shift]
        first = next((k for k, w in enumerate(shifted, 1) if w.level != "none"), None)
        detection[shift] = {"windows_to_detection": first, "levels": [w.level for w in shifted],
                            "combined": [round(w.combined, 3) for w in shifted]}
    passed = (packaging.get("in", {}).get("windows", 0) >= 20 and not false_alarms
              and all(d["windows_to_detection"] is not None and d["windows_to_detection"] <= 2
                      for d in detection.values()))
    return {
        "command": f"python benchmarks/drift_simulation.py{repository_option(args.repository)}",
        "model": args.model, "mode": "in-process", "window_notes": args.window_notes,
        "sentences_per_note": {"in": list(MULTI), "in-1": [1, 1], **{s: list(MULTI) for s in args.shifts}},
        "packaging": {k: list(v) for k, v in PACKAGING.items()}, "seed": args.seed,
        "thresholds": thresholds.to_dict(),
        "in_distribution_windows": len(in_windows), "in_distribution": packaging, "false_alarms": false_alarms,
        "in_distribution_combined_max": round(max(w.combined for w in in_windows), 4),
        "detection": detection, "passed": passed, "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "windows": [{"index": w.index, "phase": w.phase, "notes": w.notes, "sentences": w.sentences,
                     "level": w.level, "combined": round(w.combined, 4), "bound": round(w.bound, 4),
                     "estimated_f1": w.estimated_f1, "scores": w.scores} for w in windows],
    }


# --- outputs ----------------------------------------------------------------------------------------------

def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = result["windows"]
    x = [w["index"] for w in windows]
    features = sorted({f for w in windows for f in (w["scores"] or {})})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    colours = {"in-1": "#9ecae1", "genre": "#f4c542", "shorthand": "#e07b39", "admin": "#b05fc1"}
    for axis in (top, bottom):
        for w in windows:
            if w["phase"] != "in":
                axis.axvspan(w["index"] - 0.5, w["index"] + 0.5, color=colours.get(w["phase"], "#ccc"), alpha=0.25,
                             lw=0)
    for feature in features:
        top.plot(x, [(w["scores"] or {}).get(feature, np.nan) for w in windows], marker=".", lw=1, label=feature)
    top.set_ylabel("Hellinger distance to reference")
    top.set_ylim(0, 1)
    top.legend(fontsize=7, ncol=2, loc="upper left")
    top.set_title(f"Drift simulation ({result['mode']}, {result['model']} v{result.get('version', '?')}, exported "
                  f"reference, {result['window_notes']} notes/window; blue: one-sentence notes, other shades: shifts)")
    level_colour = {"none": "#2e7d32", "warning": "#f9a825", "critical": "#c62828"}
    bottom.plot(x, [w["combined"] for w in windows], color="black", lw=1)
    bottom.scatter(x, [w["combined"] for w in windows], c=[level_colour[w["level"]] for w in windows], zorder=3,
                   s=30)
    bottom.step(x, [w["bound"] for w in windows], where="mid", ls="--", color=level_colour["warning"], lw=1,
                label="warning bound (for each window's size)")
    bottom.set_ylabel("combined score (mean of top 2)")
    bottom.set_xlabel("window")
    bottom.set_ylim(0, 1)
    for phase, colour in colours.items():
        if any(w["phase"] == phase for w in windows):
            bottom.plot([], [], color=colour, lw=8, alpha=0.4,
                        label="in-distribution, 1 sentence/note" if phase == "in-1" else f"shift: {phase}")
    bottom.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4)  # below: no point hidden
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def markdown(result: dict, image: str) -> str:
    t, ref = result["thresholds"], result["reference"]
    multi, single = result["in_distribution"].get("in"), result["in_distribution"].get("in-1")
    lines = [
        "# Drift simulation", "",
        f"`{result.get('command', 'python benchmarks/drift_simulation.py')}` ({result['mode']}, "
        f"model `{result['model']}` version "
        f"{result.get('version', '?')}, {result['window_notes']} notes per window, seed {result['seed']}; run time "
        f"{sum(result['timings_s'].values()):.0f} s).", "",
        f"Reference: `{ref['path']}`, the default of `medner monitor check`, as `medner export` wrote it: "
        f"{ref['notes']} notes (the test sentences) profiled as {ref['sentences']} sentence rows. In-distribution "
        f"traffic: {result['traffic_sentences']['distinct']} {result['traffic_sentences']['split']}-split sentences "
        f"(held out of training and of the reference), in notes of {result['sentences_per_note']['in'][0]}-"
        f"{result['sentences_per_note']['in'][1]} sentences (`in`: {', '.join(result['packaging']['in'])}) or of one "
        "sentence (`in-1`).", "",
        f"**{'PASSED' if result['passed'] else 'FAILED'}** with `DriftThresholds()` (warning bound "
        f"{t['noise_floor']} + {t['noise_scale']} x sqrt(1/rows + 1/reference rows), critical: an estimated F1 drop "
        f"over {t['critical_drop']}, `max_drop` {t['max_drop']} less the estimate's error): "
        f"{len(result['false_alarms'])} false alarms over "
        f"{result['in_distribution_windows']} in-distribution windows (highest combined score "
        f"{result['in_distribution_combined_max']:.3f}); windows to detection: "
        + ", ".join(f"{k} {v['windows_to_detection']}" for k, v in result["detection"].items()) + ".", "",
        "## In-distribution windows by packaging", "",
        "| notes | windows | notes/window | sentences/window | false alarms | combined mean | combined max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label, row in (("in", f"{result['sentences_per_note']['in'][0]}-{result['sentences_per_note']['in'][1]}"
                              " sentences", multi), ("in-1", "1 sentence", single)):
        if row:
            lines.append(f"| {label} (`{name}`) | {row['windows']} | {row['notes_per_window']:.0f} | "
                         f"{row['sentences_per_window']:.0f} | {row['false_alarms']} | {row['combined_mean']:.3f} | "
                         f"{row['combined_max']:.3f} |")
    lines += [
        "", "The noise curve is `benchmarks/drift_validation.py calibrate`'s (results/drift_calibration.md); "
        f"min_notes {t['min_notes']}, combined score = mean of the top {t['top_k']} per-feature Hellinger "
        "distances. These shifts carry no gold labels: the critical level (an estimated accuracy drop) is measured "
        "against true F1 on labelled shifts in results/drift_validation.md.", "",
        "## Shifts", "",
        "| shift | windows to detection | levels | combined scores | estimated F1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, det in result["detection"].items():
        estimated = [w["estimated_f1"] for w in result["windows"] if w["phase"] == name]
        lines.append(f"| {name} | {det['windows_to_detection']} | {' '.join(det['levels'])} | "
                     f"{' '.join(f'{v:.2f}' for v in det['combined'])} | "
                     f"{' '.join('-' if v is None else f'{v:.2f}' for v in estimated)} |")
    features = sorted({f for w in result["windows"] for f in (w["scores"] or {})})
    lines += ["", "## Windows", "",
              "| window | phase | notes | sentences | level | combined | bound | estimated F1 | "
              + " | ".join(features) + " |",
              "| " + " | ".join(["---"] * (8 + len(features))) + " |"]
    for w in result["windows"]:
        scores = w["scores"] or {}
        combined = f"{w['combined']:.3f}" if scores else "-"  # not scored: fewer notes than min_notes
        estimated = "-" if w["estimated_f1"] is None else f"{w['estimated_f1']:.3f}"
        lines.append(f"| {w['index']} | {w['phase']} | {w['notes']} | {w['sentences']} | {w['level']} | "
                     f"{combined} | {w['bound']:.3f} | {estimated} | "
                     + " | ".join(f"{scores[f]:.3f}" if f in scores else "" for f in features) + " |")
    lines += ["", f"![drift simulation]({image})", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="ner_int8", help="ner or ner_int8 (faster, same features)")
    parser.add_argument("--data-dir", default=None, help="BeHealthy folder (default: $MEDNER_DATA_DIR)")
    parser.add_argument("--window-notes", type=int, default=100)
    parser.add_argument("--in-windows", type=int, default=20,
                        help="in-distribution windows of multi-sentence notes before the first shift")
    parser.add_argument("--single-windows", type=int, default=5,
                        help="in-distribution windows of one-sentence notes, after those")
    parser.add_argument("--shift-windows", type=int, default=4)
    parser.add_argument("--recovery-windows", type=int, default=3, help="in-distribution windows after each shift")
    parser.add_argument("--shifts", nargs="+", default=["genre", "shorthand", "admin"])
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift_simulation.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "drift_simulation.md").write_text(markdown(result, "drift_simulation.png"))
    plot(result, args.out / "drift_simulation.png")
    print(json.dumps({k: result[k] for k in ("thresholds", "in_distribution", "false_alarms",
                                             "in_distribution_combined_max", "passed", "timings_s")}))
    for name, d in result["detection"].items():
        print(f"{name}: detected after {d['windows_to_detection']} window(s); levels {d['levels']}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
