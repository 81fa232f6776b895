"""Drift simulation: does ``monitoring.drift`` stay quiet on in-distribution traffic and catch real shifts?

    python benchmarks/drift_simulation.py [--model ner_int8] [--window-notes 200] [--live]

1. Reference: notes built from the dev split (held out of training: seed-13 10% of train, as TrainFlow carves
   it) through the serving model version, profiled with the monitoring features; the out-of-vocabulary
   feature uses the words of the training sentences (train minus dev), as export publishes them.
2. Calibration (thresholds from in-distribution variability only): ``--calibration-windows`` windows of
   ``min_notes`` notes each (the smallest window a check scores, so the noisiest), drawn from the BeHealthy
   test split with their own seeds. warning = max + 4 std of their combined scores, rounded up to 0.05;
   critical = 2 x warning (at most 0.9). The shifted windows play no part in it.
3. Timeline: in-distribution windows (test split), then each constructed shift for ``--shift-windows``
   windows, each followed by a few in-distribution windows (recovery). Shifts:
   * ``genre``      everyday non-medical English (news, travel, cooking) from templates written here;
   * ``shorthand``  test sentences as hurried clinical shorthand: function words dropped, common clinical
                    abbreviations, interior vowels dropped from long words, lower case;
   * ``admin``      clinic administration notes with no medical content (scheduling, billing, contact).
   Notes are 1 sentence (60%) or 2-3 sentences (40%) in every phase and in the reference.
4. Each window is profiled (whylogs, ``monitoring.profiles``) into a profile store and checked with
   ``monitoring.drift.check`` exactly as ``medner monitor check`` does.

In-process by default (``NerPipeline.with_features``: the code the Triton model runs); ``--live`` sends the
notes through a real Triton server started with profiling on (``TritonServer(profile_dir=...)``), one
profile window (``--live-window-seconds``) per simulated window.

Outputs: benchmarks/results/drift_simulation.{md,json,png} (``--live``: drift_simulation_live.*).
Must show: 0 false alarms over the in-distribution windows, each shift detected (level >= warning) within
2 windows of its start.
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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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


@dataclass
class Traffic:
    """Note factories: ``notes(kind, n, rng)`` for the in-distribution and shifted phases."""

    test: list[list[str]]  # test split sentences (tokens)
    dev: list[list[str]]

    def sentence(self, kind: str, rng: random.Random) -> str:
        if kind in ("in", "reference"):
            return " ".join(rng.choice(self.dev if kind == "reference" else self.test))
        if kind == "genre":
            return genre_sentence(rng)
        if kind == "shorthand":
            return shorthand(rng.choice(self.test), rng)
        if kind == "admin":
            return admin_sentence(rng)
        raise ValueError(f"unknown traffic kind {kind!r}")

    def notes(self, kind: str, n: int, rng: random.Random) -> list[str]:
        """``n`` notes of 1 sentence (60%) or 2-3 sentences (40%)."""
        return [" ".join(self.sentence(kind, rng) for _ in range(1 if rng.random() < 0.6 else rng.randint(2, 3)))
                for _ in range(n)]


# --- the model, in-process or behind a live Triton server -----------------------------------------------

def staged_version(repository: Path, model: str, train: Sequence[Sequence[str]], work: Path) -> Path:
    """The model's serving version folder, with ``train_vocabulary.txt``: itself when export published one,
    else a copy made of symlinks plus a vocabulary of ``train`` (the repository is left untouched)."""
    from monitoring.drift import default_reference
    from monitoring.features import VOCABULARY_FILE, write_vocabulary

    version_dir = default_reference(repository, model).parent  # the version that serves
    if (version_dir / VOCABULARY_FILE).exists():
        return version_dir
    staged = work / model / version_dir.name
    staged.mkdir(parents=True)
    for item in version_dir.iterdir():
        if item.is_file():
            (staged / item.name).symlink_to(item.resolve())
    write_vocabulary((w for s in train for w in s), staged)
    return staged


def in_process_featurizer(repository: Path, model: str, version_dir: Path, threads: int
                          ) -> Callable[[list[str]], np.ndarray]:
    from clients.local import config_parameters
    from medner.inference import NerPipeline

    pipeline = NerPipeline(version_dir, config_parameters(repository / model / "config.pbtxt"), threads)
    return lambda notes: pipeline.with_features(notes)[1]


def staged_repository(repository: Path, model: str, version_dir: Path, work: Path) -> Path:
    """A repository for the live server whose ``model`` latest version is ``version_dir`` (symlinks)."""
    target = work / "repository"
    shutil.copytree(repository, target, symlinks=False, copy_function=os.symlink,
                    ignore=shutil.ignore_patterns("__pycache__", ".staging-*"))
    served = target / model / version_dir.name
    shutil.rmtree(served)
    served.mkdir()
    for item in version_dir.iterdir():  # the staged version: with the training vocabulary
        (served / item.name).symlink_to(item.resolve())
    # the python model's current code (the profiling hook), shared by ner and ner_int8: a version exported
    # before profiling existed carries a model.py without it
    current = repository / "ner" / "model.py"
    if current.exists():
        (served / "model.py").unlink(missing_ok=True)
        (served / "model.py").symlink_to(current.resolve())
    return target


# --- the simulation ---------------------------------------------------------------------------------------

@dataclass
class Window:
    index: int
    phase: str  # "in" or a shift kind
    start: datetime
    notes: int = 0
    level: str = "none"
    combined: float = 0.0
    scores: dict[str, float] | None = None


def profile_window(store: Path, model: str, start: datetime, rows: np.ndarray) -> None:
    from monitoring.profiles import profile_rows, window_name, write_view

    write_view(profile_rows(rows, start), store / model / f"{window_name(start.timestamp())}_sim.bin")


def calibrate(combined: Sequence[float]) -> tuple[float, float]:
    """Thresholds from in-distribution combined scores: warning = max + 4 std (up to 0.05), critical = 2x."""
    warning = max(combined) + 4 * statistics.pstdev(combined)
    warning = min(0.9, np.ceil(warning * 20) / 20)
    return float(warning), float(min(0.9, 2 * warning))


def run(args: argparse.Namespace) -> dict:
    from medner.config import data_dir as resolve_data_dir
    from medner.data import read_behealthy, split_dev
    from monitoring.drift import DriftThresholds, check, compare
    from monitoring.profiles import profile_rows, read_profile, write_view

    corpus = read_behealthy(resolve_data_dir(args.data_dir))
    train, dev = split_dev(corpus["train"], 0.1, 13)  # TrainFlow's split: dev is held out of training
    traffic = Traffic([list(s.tokens) for s in corpus["test"]], [list(s.tokens) for s in dev])
    work = Path(tempfile.mkdtemp(prefix="drift-sim-"))
    store = work / "profiles"
    timings: dict[str, float] = {}
    try:
        version_dir = staged_version(args.repository, args.model, [s.tokens for s in train], work / "staged")
        featurize = in_process_featurizer(args.repository, args.model, version_dir, args.threads)
        rng = random.Random(args.seed)

        began = time.perf_counter()
        reference = work / "reference_profile.bin"
        write_view(profile_rows(featurize(traffic.notes("reference", args.reference_notes, rng)), EPOCH), reference)
        reference_view = read_profile(reference)
        timings["reference_s"] = time.perf_counter() - began

        began = time.perf_counter()
        base = DriftThresholds()
        calibration = []
        for k in range(args.calibration_windows):
            rows = featurize(traffic.notes("in", base.min_notes, random.Random(10_000 + k)))
            report = compare(profile_rows(rows, EPOCH), reference_view, EPOCH, EPOCH,
                             base)
            calibration.append(report.combined)
        warning, critical = calibrate(calibration)
        timings["calibration_s"] = time.perf_counter() - began
        thresholds = (DriftThresholds(warning, critical, base.min_notes, base.top_k)
                      if args.thresholds == "calibrated" else base)

        phases = ["in"] * args.in_windows
        for shift in args.shifts:
            phases += [shift] * args.shift_windows + ["in"] * args.recovery_windows
        windows = [Window(i, phase, EPOCH + timedelta(hours=i)) for i, phase in enumerate(phases)]

        began = time.perf_counter()
        if args.live:
            live_windows(args, traffic, windows, version_dir, work, store)
        else:
            for window in windows:
                notes = traffic.notes(window.phase, args.window_notes, random.Random(args.seed + window.index))
                rows = featurize(notes)
                profile_window(store, args.model, window.start, rows)
        timings["traffic_s"] = time.perf_counter() - began

        for window in windows:
            report = check(store, args.model, reference, window.start, window.start + timedelta(hours=1), thresholds)
            window.notes, window.level = report.counts["notes"], report.level
            window.combined, window.scores = report.combined or 0.0, report.scores
        result = summarise(args, windows, calibration, (warning, critical), thresholds, timings)
        return {"version": int(version_dir.name), **result}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def live_windows(args: argparse.Namespace, traffic: Traffic, windows: list[Window], version_dir: Path, work: Path,
                 store: Path) -> None:
    """Send each window's notes through a live Triton server that profiles them; map the server's profile
    windows (wall clock) onto the simulated ones."""
    from clients.ner_client import NerClient
    from medner.triton import TritonServer
    from monitoring.profiles import list_profiles, merge_profiles, write_view

    live_store = work / "live-profiles"
    seconds = args.live_window_seconds
    server = TritonServer.on_free_ports(staged_repository(args.repository, args.model, version_dir, work),
                                        log_file=work / "triton.log", profile_dir=str(live_store),
                                        profile_window_seconds=seconds)
    server.start()
    starts = []
    try:
        with NerClient(server.grpc_url, model=args.model) as client:
            for window in windows:
                notes = traffic.notes(window.phase, args.window_notes, random.Random(args.seed + window.index))
                now = time.time()
                time.sleep(seconds - now % seconds + 0.05)  # start at a window boundary
                starts.append(time.time() - time.time() % seconds)
                client.extract(notes)
                if time.time() - starts[-1] > seconds:
                    raise RuntimeError(f"window {window.index}: {len(notes)} notes took longer than {seconds}s; "
                                       "raise --live-window-seconds")
    finally:
        server.stop()
    for window, start in zip(windows, starts):
        moment = datetime.fromtimestamp(start, UTC)
        merged = merge_profiles(list_profiles(live_store, args.model, moment, moment + timedelta(seconds=seconds)))
        if merged is not None:
            from monitoring.profiles import window_name

            write_view(merged, store / args.model / f"{window_name(window.start.timestamp())}_live.bin")


def summarise(args: argparse.Namespace, windows: list[Window], calibration: list[float],
              suggested: tuple[float, float], thresholds, timings: dict[str, float]) -> dict:
    from monitoring.drift import DriftThresholds

    in_windows = [w for w in windows if w.phase == "in"]
    false_alarms = [w.index for w in in_windows if w.level != "none"]
    detection = {}
    for shift in args.shifts:
        shifted = [w for w in windows if w.phase == shift]
        first = next((k for k, w in enumerate(shifted, 1) if w.level != "none"), None)
        detection[shift] = {"windows_to_detection": first, "levels": [w.level for w in shifted],
                            "combined": [round(w.combined, 3) for w in shifted]}
    passed = (len(in_windows) >= 20 and not false_alarms
              and all(d["windows_to_detection"] is not None and d["windows_to_detection"] <= 2
                      for d in detection.values()))
    return {
        "model": args.model, "mode": "live Triton" if args.live else "in-process", "window_notes": args.window_notes,
        "reference_notes": args.reference_notes, "seed": args.seed,
        "calibration": {"windows": len(calibration), "notes_per_window": thresholds.min_notes,
                        "combined_max": round(max(calibration), 4),
                        "combined_mean": round(statistics.mean(calibration), 4),
                        "combined_std": round(statistics.pstdev(calibration), 4),
                        "suggested_warning": suggested[0], "suggested_critical": suggested[1]},
        "thresholds_source": args.thresholds, "defaults": asdict(DriftThresholds()),
        "thresholds": {"warning": thresholds.warning, "critical": thresholds.critical,
                       "min_notes": thresholds.min_notes, "top_k": thresholds.top_k},
        "in_distribution_windows": len(in_windows), "false_alarms": false_alarms,
        "in_distribution_combined_max": round(max(w.combined for w in in_windows), 4),
        "detection": detection, "passed": passed, "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "windows": [{"index": w.index, "phase": w.phase, "notes": w.notes, "level": w.level,
                     "combined": round(w.combined, 4), "scores": w.scores} for w in windows],
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
    colours = {"genre": "#f4c542", "shorthand": "#e07b39", "admin": "#b05fc1"}
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
    top.set_title(f"Drift simulation ({result['mode']}, {result['model']}, {result['window_notes']} notes/window; "
                  "shaded: shifted traffic)")
    level_colour = {"none": "#2e7d32", "warning": "#f9a825", "critical": "#c62828"}
    bottom.plot(x, [w["combined"] for w in windows], color="black", lw=1)
    bottom.scatter(x, [w["combined"] for w in windows], c=[level_colour[w["level"]] for w in windows], zorder=3,
                   s=30)
    for name, value in (("warning", result["thresholds"]["warning"]), ("critical", result["thresholds"]["critical"])):
        bottom.axhline(value, ls="--", color=level_colour[name], lw=1)
        bottom.text(x[0], value + 0.02, f"{name} {value}", va="bottom", fontsize=8, color=level_colour[name])
    bottom.set_ylabel("combined score (mean of top 2)")
    bottom.set_xlabel("window")
    bottom.set_ylim(0, 1)
    for phase, colour in colours.items():
        if any(w["phase"] == phase for w in windows):
            bottom.plot([], [], color=colour, lw=8, alpha=0.4, label=f"shift: {phase}")
    bottom.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict, image: str) -> str:
    c, t = result["calibration"], result["thresholds"]
    lines = [
        "# Drift simulation", "",
        f"`python benchmarks/drift_simulation.py{' --live' if result['mode'] == 'live Triton' else ''}` "
        f"({result['mode']}, model `{result['model']}` version {result.get('version', '?')}, "
        f"{result['window_notes']} notes per window, reference {result['reference_notes']} dev-split notes, "
        f"seed {result['seed']}; run time {sum(result['timings_s'].values()):.0f} s"
        + ("; traffic through the server's profiling, reference and calibration in-process with the same "
           "pipeline code" if result["mode"] == "live Triton" else "") + ").", "",
        f"**{'PASSED' if result['passed'] else 'FAILED'}**: {len(result['false_alarms'])} false alarms over "
        f"{result['in_distribution_windows']} in-distribution windows (highest combined score "
        f"{result['in_distribution_combined_max']:.3f}); windows to detection: "
        + ", ".join(f"{k} {v['windows_to_detection']}" for k, v in result["detection"].items()) + ".", "",
        "## Thresholds", "",
        f"Used ({result['thresholds_source']}): warning {t['warning']}, critical {t['critical']}, "
        f"min_notes {t['min_notes']}, combined score = "
        f"mean of the top {t['top_k']} per-feature Hellinger distances.", "",
        f"Calibration, in-distribution only: {c['windows']} windows of {c['notes_per_window']} test-split notes "
        f"(the smallest window a check scores, so the noisiest) against the reference: combined score mean "
        f"{c['combined_mean']:.3f}, std {c['combined_std']:.3f}, max {c['combined_max']:.3f} -> warning = max + 4 std "
        f"rounded up to 0.05 = {c['suggested_warning']}, critical = 2 x warning = {c['suggested_critical']}. "
        f"`DriftThresholds()` defaults: warning {result['defaults']['warning']}, critical "
        f"{result['defaults']['critical']}.", "",
        "## Shifts", "",
        "| shift | windows to detection | levels | combined scores |", "| --- | --- | --- | --- |",
    ]
    for name, d in result["detection"].items():
        lines.append(f"| {name} | {d['windows_to_detection']} | {' '.join(d['levels'])} | "
                     f"{' '.join(f'{v:.2f}' for v in d['combined'])} |")
    features = sorted({f for w in result["windows"] for f in (w["scores"] or {})})
    lines += ["", "## Windows", "", "| window | phase | notes | level | combined | " + " | ".join(features) + " |",
              "| " + " | ".join(["---"] * (5 + len(features))) + " |"]
    for w in result["windows"]:
        scores = w["scores"] or {}
        lines.append(f"| {w['index']} | {w['phase']} | {w['notes']} | {w['level']} | {w['combined']:.3f} | "
                     + " | ".join(f"{scores[f]:.3f}" if f in scores else "" for f in features) + " |")
    lines += ["", f"![drift simulation]({image})", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="ner_int8", help="ner or ner_int8 (faster, same features)")
    parser.add_argument("--data-dir", default=None, help="BeHealthy folder (default: $MEDNER_DATA_DIR)")
    parser.add_argument("--window-notes", type=int, default=200)
    parser.add_argument("--reference-notes", type=int, default=1000)
    parser.add_argument("--calibration-windows", type=int, default=20)
    parser.add_argument("--in-windows", type=int, default=20, help="in-distribution windows before the first shift")
    parser.add_argument("--shift-windows", type=int, default=4)
    parser.add_argument("--recovery-windows", type=int, default=3, help="in-distribution windows after each shift")
    parser.add_argument("--shifts", nargs="+", default=["genre", "shorthand", "admin"])
    parser.add_argument("--thresholds", choices=["calibrated", "default"], default="calibrated",
                        help="this run's calibrated thresholds, or DriftThresholds' defaults")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (in-process)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--live", action="store_true", help="through a live Triton server with profiling on")
    parser.add_argument("--live-window-seconds", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "drift_simulation_live" if args.live else "drift_simulation"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result, f"{name}.png"))
    plot(result, args.out / f"{name}.png")
    print(json.dumps({k: result[k] for k in ("thresholds", "calibration", "false_alarms",
                                             "in_distribution_combined_max", "passed", "timings_s")}))
    for name, d in result["detection"].items():
        print(f"{name}: detected after {d['windows_to_detection']} window(s); levels {d['levels']}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
