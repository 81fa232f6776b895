"""The accuracy ablation: each lever of ``medner.experiments.LEVER_GRID`` trained with several seeds on one split,
through the same code as ExperimentFlow's candidates (``medner.experiments.run_candidate``); choices are read on
dev, test is reported. Each (candidate, seed) run is one file, so the ablation resumes where it stopped.

    python benchmarks/accuracy.py run [--only NAME ...] [--seeds 13 14 15]   # trains what is missing
    python benchmarks/accuracy.py run --only distill-... --teacher TrainFlow/ID  # students of a trained teacher
    python benchmarks/accuracy.py ensembles [--only NAME ...]               # ensemble files, no training
    python benchmarks/accuracy.py soups [--only NAME ...]                   # each ensemble's seeds averaged
    python benchmarks/accuracy.py report                                    # tables from the run files
    python benchmarks/accuracy.py ceilings                                  # what a perfect sentence gate would give

Writes benchmarks/results/accuracy/<candidate>-s<seed>.json and benchmarks/results/accuracy.{md,json}. Each run
also keeps its dev and test log-probabilities (benchmarks/results/accuracy/log_probs/, not committed: a megabyte a
run); ``run`` writes the seeds kept there, in order, as ensembles of up to ENSEMBLE_SEEDS (at least two):
<candidate>-ensemble.json the first, <candidate>-ensemble-2.json the next, ... (mean probabilities; as many encoder
passes per note as seeds), so a served ensemble is measured over several, as single models are over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, hardware_info, write_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "accuracy"
LOG_PROBS = RUNS / "log_probs"
SEEDS = (13, 14, 15)
ENSEMBLE_SEEDS = 3  # seeds per ensemble: what the frontier serves (benchmarks/results/frontier.md)
SOUP_WEIGHTS = "model.safetensors"  # what a soup averages, in every model folder
HEADLINE = ("entity_f1", "entity_f1_D", "entity_f1_T", "entity_precision_D", "entity_recall_D",
            "entity_precision_T", "entity_recall_T", "entity_f1_relaxed", "token_weighted_f1")


def run_file(name: str, seed: int | str) -> Path:
    return RUNS / f"{name}-s{seed}.json" if isinstance(seed, int) else RUNS / f"{name}-{seed}.json"


def run(names: list[str], seeds: list[int], data_dir: str | None, teacher: str = "") -> None:
    from medner.config import data_dir as resolve_data_dir
    from medner.experiments import LEVER_GRID, distils, parse_grid, run_candidate
    from medner.prepare import prepare_data
    from medner.steps import model_folder

    candidates = [c for c in parse_grid(LEVER_GRID) if not names or c.name in names]
    students = [c.name for c in candidates if distils(c)]
    if students and not teacher:
        sys.exit(f"{', '.join(students)} distil from a teacher: pass --teacher (a TrainFlow run or a model folder)")
    distill = {"teacher": str(model_folder(teacher))} if students else {}
    data = prepare_data(resolve_data_dir(data_dir))
    RUNS.mkdir(parents=True, exist_ok=True)
    for candidate in candidates:
        for seed in seeds:
            path = run_file(candidate.name, seed)
            if path.exists():
                continue
            started = time.time()
            student = candidate.name in students
            result = run_candidate(candidate, data.train, data.dev, data.test,
                                   {"seed": seed, **(distill if student else {})})
            row = {**result.row(), "seed": seed, "data_version": data.version, "hardware": hardware_info(),
                   **({"teacher": teacher, "train_seconds_include_teacher": True} if student else {}),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
                   **decoding_levers(result.model_files, data, candidate.name, seed)}
            path.write_text(json.dumps(row, indent=1))
            print(f"{candidate.name} seed {seed}: dev {result.dev['entity_f1']:.4f}, "
                  f"test {result.test['entity_f1']:.4f}"
                  f" (D {result.test['entity_f1_D']:.4f}, T {result.test['entity_f1_T']:.4f}), "
                  f"{result.train_seconds:.0f} s", flush=True)
            write_ensembles(candidate.name, data)


def write_ensembles(name: str, data: object, again: bool = False) -> None:
    """Write the ensemble files of ``name``'s kept seeds (:func:`ensemble_groups`) that are missing or hold other
    seeds; ``again``: every one, from the kept log-probabilities (no training)."""
    for group, kept in enumerate(ensemble_groups(name), 1):
        path = run_file(name, group_file("ensemble", group))
        if not again and path.exists() and json.loads(path.read_text())["seeds"] == seeds_of(kept):
            continue
        ensemble = ensemble_metrics(name, data, kept)
        path.write_text(json.dumps(ensemble, indent=1))
        print(f"{name} ensemble of seeds {ensemble['seeds']}: dev {ensemble['dev']['entity_f1']:.4f}, test "
              f"{ensemble['test']['entity_f1']:.4f}, entity vote {ensemble['entity_vote']['test']['entity_f1']:.4f}",
              flush=True)


def ensembles(names: list[str], data_dir: str | None) -> None:
    """Rewrite every ensemble file of the candidates (all of LEVER_GRID by default) from the kept
    log-probabilities: what a change to :func:`ensemble_metrics` needs, without training anything."""
    from medner.config import data_dir as resolve_data_dir
    from medner.experiments import LEVER_GRID
    from medner.prepare import prepare_data

    data = prepare_data(resolve_data_dir(data_dir))
    for item in LEVER_GRID:
        if not names or item["name"] in names:
            write_ensembles(item["name"], data, again=True)


def soups(names: list[str], data_dir: str | None) -> None:
    """Each ensemble group's models averaged weight by weight into one (a uniform "model soup", Wortsman et al.,
    ICML 2022): would the ensemble's accuracy survive at one model's serving cost? Decoded as the ensemble is
    (plain Viterbi; with their mean learned scores where they have a CRF layer). Writes <candidate>-soup.json,
    <candidate>-soup-2.json ... beside the ensemble files; a group whose model folders are gone is skipped."""
    import tempfile

    from medner.config import data_dir as resolve_data_dir
    from medner.decoding import SpanEdges, mean_learned
    from medner.experiments import LEVER_GRID
    from medner.inference import sentence_log_probs, torch_encoder
    from medner.model_io import load_model
    from medner.prepare import prepare_data

    data = prepare_data(resolve_data_dir(data_dir))
    for item in LEVER_GRID:
        if names and item["name"] not in names:
            continue
        for group, kept in enumerate(ensemble_groups(item["name"]), 1):
            folders = [model_dir(item["name"], seed) for seed in seeds_of(kept)]
            if not all((folder / SOUP_WEIGHTS).exists() for folder in folders):
                print(f"{item['name']} seeds {seeds_of(kept)}: a model folder is missing, no soup", flush=True)
                continue
            learned = mean_learned([SpanEdges.load(folder) for folder in folders])
            plain = _with_learned(SpanEdges(), learned) if learned is not None else None
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer, model = load_model(average_weights(folders, Path(tmp) / "soup"))
                result = {split: _scores(sentence_log_probs([s.tokens for s in getattr(data, split)], tokenizer,
                                                            torch_encoder(model)), getattr(data, split), plain)
                          for split in ("dev", "test")}
            soup = {"name": item["name"], "seeds": seeds_of(kept), "data_version": data.version,
                    "hardware": hardware_info(), **result}
            run_file(item["name"], group_file("soup", group)).write_text(json.dumps(soup, indent=1))
            print(f"{item['name']} soup of seeds {soup['seeds']}: dev {result['dev']['entity_f1']:.4f}, test "
                  f"{result['test']['entity_f1']:.4f}", flush=True)


def average_weights(folders: list[Path], target: Path) -> Path:
    """A copy of the first model folder whose weights are the mean of every folder's, tensor by tensor."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    states = [load_file(folder / SOUP_WEIGHTS) for folder in folders]
    shutil.copytree(folders[0], target)
    save_file({key: torch.stack([state[key].float() for state in states]).mean(0).to(tensor.dtype)
               for key, tensor in states[0].items()}, target / SOUP_WEIGHTS, metadata={"format": "pt"})
    return target


def decoding_levers(model_files: dict[str, bytes], data: object, name: str, seed: int) -> dict[str, dict]:
    """The decoding levers, which need no retraining, measured on each run's own model: span edges learned from
    its train split, and dropping entities whose score (the served one: mean word confidence) is below a threshold
    chosen on dev. Keeps the model's log-probabilities for :func:`ensemble_metrics`."""
    import numpy as np

    from medner.decoding import SpanEdges, mean_learned
    from medner.inference import sentence_log_probs, torch_encoder
    from medner.model_io import files_to_dir, load_model

    folder = model_dir(name, seed)  # kept: benchmarks/frontier.py serves a run's model by this folder
    tokenizer, model = load_model(files_to_dir(model_files, folder))
    log_probs = {split: sentence_log_probs([s.tokens for s in getattr(data, split)], tokenizer, torch_encoder(model))
                 for split in ("dev", "test")}
    LOG_PROBS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(LOG_PROBS / f"{name}-s{seed}.npz", **{split: np.concatenate(rows).astype(np.float32)
                                                               for split, rows in log_probs.items()})
    edges = _with_learned(SpanEdges.learn((s.tokens, s.labels) for s in data.train),
                          mean_learned([SpanEdges.load(folder)]))
    return {"span_edges": {split: _scores(rows, getattr(data, split), edges) for split, rows in log_probs.items()},
            "min_score": min_score_metrics(log_probs, data, edges)}


def _with_learned(edges: Any, learned: Any) -> Any:
    """Span edges carrying a CRF layer's learned scores, where the model was trained with one (``learned``)."""
    return edges.with_learned(*learned) if learned is not None else edges


MIN_SCORES = (0.0, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def min_score_metrics(log_probs: dict[str, list], data: object, edges: object) -> dict:
    """Decoded with span edges (the default), entity F1 on dev for each threshold of :data:`MIN_SCORES` (entities
    scoring below it dropped), the threshold dev prefers, and dev and test metrics at it."""
    import numpy as np

    from medner.decoding import decode
    from medner.metrics import evaluate
    from medner.spans import labels_to_spans

    def labels_at(split: str, threshold: float) -> list[list[str]]:
        result = []
        for lp, sentence in zip(log_probs[split], getattr(data, split)):
            labels, confidence = decode(lp, words=sentence.tokens, edges=edges), np.exp(lp.max(axis=-1))
            for span in labels_to_spans(labels):
                if confidence[span.start:span.end].mean() < threshold:
                    labels[span.start:span.end] = ["O"] * (span.end - span.start)
            result.append(labels)
        return result

    gold = {split: [s.labels for s in getattr(data, split)] for split in ("dev", "test")}
    sweep = {t: evaluate(gold["dev"], labels_at("dev", t))["entity_f1"] for t in MIN_SCORES}
    best = max(sweep, key=lambda t: (sweep[t], -t))  # ties: the lower threshold (fewer entities dropped)
    return {"dev_sweep": sweep, "threshold": best,
            **{split: evaluate(gold[split], labels_at(split, best)) for split in ("dev", "test")}}


def _scores(log_probs: list, sentences: list, edges: object = None) -> dict[str, float]:
    from medner.decoding import decode
    from medner.metrics import evaluate

    return evaluate([s.labels for s in sentences],
                    [decode(lp, words=s.tokens, edges=edges) for lp, s in zip(log_probs, sentences)])


def _per_sentence(log_probs: Any, sentences: list) -> list:
    """A kept split's word rows (all sentences concatenated, as :func:`decoding_levers` saves them), per sentence."""
    import numpy as np

    return np.split(log_probs, np.cumsum([len(s.tokens) for s in sentences])[:-1])


def model_dir(name: str, seed: int) -> Path:
    """Where a run of the ablation keeps its model: ``$MEDNER_CACHE_DIR/models/ablation-NAME-sSEED``."""
    from medner.config import cache_dir

    return cache_dir() / "models" / f"ablation-{name}-s{seed}"


def group_file(kind: str, group: int) -> str:
    """The run-file suffix of a candidate's ``group``-th ensemble or soup (``kind``; 1: ``ensemble``, then
    ``ensemble-2`` ...)."""
    return kind if group == 1 else f"{kind}-{group}"


def group_runs(name: str, kind: str) -> list[dict]:
    """Every ``kind`` (ensemble, soup) file of candidate ``name``, in group order."""
    found = []
    while (path := run_file(name, group_file(kind, len(found) + 1))).exists():
        found.append(json.loads(path.read_text()))
    return found


def seeds_of(kept: list[Path]) -> list[int]:
    """The seeds of kept log-probability files (``NAME-sSEED.npz``)."""
    return [int(p.stem.rsplit("-s", 1)[1]) for p in kept]


def collapsed(run: dict) -> bool:
    """Whether a run's training collapsed: its model tags nothing on dev (entity F1 0), a failed run that a
    production flow's gates refuse rather than a model to average."""
    return run["dev"]["entity_f1"] == 0


def ensemble_groups(name: str) -> list[list[Path]]:
    """The kept log-probabilities of ``name``'s seeds that did not collapse, in seed order, cut into ensembles of
    ENSEMBLE_SEEDS; a last, smaller group counts from two seeds."""
    kept = sorted((p for p in LOG_PROBS.glob(f"{name}-s[0-9]*.npz")
                   if not collapsed(json.loads(run_file(name, seeds_of([p])[0]).read_text()))),
                  key=lambda p: seeds_of([p]))
    groups = [kept[i: i + ENSEMBLE_SEEDS] for i in range(0, len(kept), ENSEMBLE_SEEDS)]
    return [g for g in groups if len(g) >= 2]


def ensemble_metrics(name: str, data: object, kept: list[Path]) -> dict:
    """Dev and test metrics (plain, with span edges, and dropping unsure entities) of the ensemble of ``name``'s
    seeds whose log-probabilities are ``kept``: the mean of their probabilities, decoded as one model's; and
    ``entity_vote``: the entities most of the seeds' own decodings agree on (:func:`entity_vote`)."""
    import numpy as np

    from medner.decoding import SpanEdges, mean_learned
    from medner.metrics import evaluate

    # seeds trained with a CRF layer: their mean learned scores in every decoding ("plain": without span edges)
    learned = mean_learned([SpanEdges.load(model_dir(name, seed)) for seed in seeds_of(kept)])
    plain = _with_learned(SpanEdges(), learned) if learned is not None else None
    edges = _with_learned(SpanEdges.learn((s.tokens, s.labels) for s in data.train), learned)
    result = {"name": name, "seeds": seeds_of(kept), "data_version": data.version,
              "hardware": hardware_info(), "span_edges": {}, "entity_vote": {}}
    log_probs = {}
    for split in ("dev", "test"):
        sentences = getattr(data, split)
        members = [np.load(p)[split] for p in kept]
        log_probs[split] = _per_sentence(np.log(np.mean(np.exp(members), axis=0)), sentences)
        result[split] = _scores(log_probs[split], sentences, plain)
        result["span_edges"][split] = _scores(log_probs[split], sentences, edges)
        voted = entity_vote([_per_sentence(m, sentences) for m in members], sentences, plain)
        result["entity_vote"][split] = evaluate([s.labels for s in sentences], voted)
    return {**result, "min_score": min_score_metrics(log_probs, data, edges)}


def entity_vote(members: list[list[Any]], sentences: list, plain: Any = None) -> list[list[str]]:
    """Each sentence's labels from the entities (span and type) that more than half of the ``members`` (each one
    model's log-probabilities per sentence) predict, each member decoded with plain Viterbi (``plain``: with CRF
    layers' scores, no span edges). Two such entities never overlap: some member would have predicted both."""
    from collections import Counter

    from medner.decoding import decode
    from medner.spans import labels_to_spans

    voted = []
    for index, sentence in enumerate(sentences):
        votes = Counter(span for member in members
                        for span in labels_to_spans(decode(member[index], words=sentence.tokens, edges=plain)))
        labels = ["O"] * len(sentence.tokens)
        for (start, end, label), count in votes.items():
            if 2 * count > len(members):
                labels[start:end] = [label] * (end - start)
        voted.append(labels)
    return voted


def candidate_params(item: dict) -> dict:
    """A LEVER_GRID item's training settings (without its name, kind and description)."""
    return {k: v for k, v in item.items() if k not in ("name", "kind", "lever")}


def report() -> None:
    from medner.experiments import LEVER_GRID
    from medner.labels import ENTITY_TYPES
    from medner.metrics import ERROR_CATEGORIES
    from medner.report import mean_sd

    every_run = {item["name"]: [json.loads(p.read_text()) for p in sorted(RUNS.glob(f"{item['name']}-s[0-9]*.json"))]
                 for item in LEVER_GRID}
    runs_of = {name: [r for r in runs if not collapsed(r)] for name, runs in every_run.items()}
    collapses = {name: [r["seed"] for r in runs if collapsed(r)] for name, runs in every_run.items()
                 if any(collapsed(r) for r in runs)}
    rows = []
    for item in LEVER_GRID:
        runs = runs_of[item["name"]]
        if not runs:
            continue
        params = candidate_params(item)
        summary = {"name": item["name"], "lever": item.get("lever", ""), "params": params,
                   "seeds": [r["seed"] for r in runs],
                   **({"teacher": sorted({r["teacher"] for r in runs}),
                       # runs made before the flag existed: the first ones, without copies, ran before training
                       # counted the teacher's pass; those with copies came after
                       "train_seconds_exclude_teacher": [
                           r["seed"] for r in runs
                           if not r.get("train_seconds_include_teacher", bool(r["params"].get("distill_copies")))]}
                      if "teacher" in runs[0] else {}),
                   "train_seconds": [r["train_seconds"] for r in runs],
                   **{f"{split}_{k}": [r[split][k] for r in runs] for split in ("dev", "test") for k in HEADLINE},
                   **{f"{split}_entity_f1_edges": [r["span_edges"][split]["entity_f1"] for r in runs]
                      for split in ("dev", "test")},
                   "test_errors": {f"{c}_{t}": statistics.mean(r["test"][f"errors_{c}_{t}"] for r in runs)
                                   for c in (*ERROR_CATEGORIES, "spurious_in_empty") for t in ENTITY_TYPES}}
        rows.append(summary)

    thresholded = []  # the min-score lever, on the runs that measured it
    for item in LEVER_GRID:
        runs = [r for r in runs_of[item["name"]] if "min_score" in r]
        if runs:
            thresholded.append({"name": item["name"], "seeds": [r["seed"] for r in runs],
                                "params": candidate_params(item),
                                "thresholds": [r["min_score"]["threshold"] for r in runs],
                                **{f"{split}_entity_f1": [r["min_score"][split]["entity_f1"] for r in runs]
                                   for split in ("dev", "test")},
                                "test_entity_f1_edges": [r["span_edges"]["test"]["entity_f1"] for r in runs]})

    def seeds_alone(row: dict, seeds: list[int]) -> list[float]:
        """The test F1 of ``row``'s runs of these seeds, each alone."""
        return [f1 for seed, f1 in zip(row["seeds"], row["test_entity_f1"]) if seed in seeds]

    ensembles = []
    for row in rows:
        ensembles += [{**ensemble, "lever": row["lever"], "params": row["params"],
                       "test_entity_f1_seeds_alone": seeds_alone(row, ensemble["seeds"])}
                      for ensemble in group_runs(row["name"], "ensemble")]
    souped = []  # the weight averages of the same seed groups (soups)
    for row in rows:
        for soup in group_runs(row["name"], "soup"):
            same = next((e for e in ensembles if e["name"] == row["name"] and e["seeds"] == soup["seeds"]), None)
            souped.append({**soup, "params": row["params"],
                           "ensemble_test_entity_f1": same["test"]["entity_f1"] if same else None,
                           "test_entity_f1_seeds_alone": seeds_alone(row, soup["seeds"])})
    over_ensembles = []  # candidates with several ensembles: their mean ± sd, as the runs' over seeds
    for row in rows:
        own = [e for e in ensembles if e["name"] == row["name"] and len(e["seeds"]) == ENSEMBLE_SEEDS]
        if len(own) >= 2:
            with_vote = all("entity_vote" in e for e in own)
            over_ensembles.append({"name": row["name"], "seeds": [e["seeds"] for e in own],
                                   **{f"{split}_{k}": [e[split][k] for e in own] for split in ("dev", "test")
                                      for k in ("entity_f1", "entity_f1_D", "entity_f1_T")},
                                   **({f"{split}_{k}_vote": [e["entity_vote"][split][k] for e in own]
                                       for split in ("dev", "test") for k in ("entity_f1", "entity_f1_D",
                                                                                "entity_f1_T")} if with_vote else {}),
                                   "test_entity_f1_seeds_alone": [statistics.mean(e["test_entity_f1_seeds_alone"])
                                                                  for e in own]})

    def held_out(row: dict, value: str | float) -> str:
        """A dev score (a run row's key, or an ensemble's number), unless the model trained on dev."""
        if row["params"].get("train_on_dev"):
            return "not held out"
        return mean_sd(row[value]) if isinstance(value, str) else f"{value:.3f}"

    def vote(ensemble: dict, split: str) -> str:
        """An ensemble's entity-vote F1 on a split ("-": its file predates the lever)."""
        if "entity_vote" not in ensemble:
            return "-"
        f1 = ensemble["entity_vote"][split]["entity_f1"]
        return held_out(ensemble, f1) if split == "dev" else f"{f1:.3f}"

    def over_vote(over: dict, key: str) -> str:
        """An over-ensembles row's entity-vote figure ("-": a file predates the lever)."""
        return mean_sd(over[key]) if key in over else "-"

    def section(title: str, intro: str, header: list[str], table: list[str]) -> list[str]:
        """A titled table, or nothing when it has no rows."""
        return ["", f"## {title}", "", intro, "", *header, *table] if table else []

    if not rows:
        raise SystemExit(f"no run files in {RUNS}: `python benchmarks/accuracy.py run` writes them")
    machines = sorted({hardware(json.loads(p.read_text())["hardware"]) for p in RUNS.glob("*.json")})
    excluded = [f"{r['name']} (seeds {', '.join(map(str, r['train_seconds_exclude_teacher']))})"
                for r in rows if r.get("train_seconds_exclude_teacher")]
    lines = [
        "# Accuracy ablation on BeHealthy", "",
        "Each row: one candidate of `medner.experiments.LEVER_GRID`, mean ± sd over its seeds; choices are read on "
        "**dev**, test is reported. Strict entity F1 (exact boundaries and type), plain Viterbi decoding; the two "
        "*+ edges* columns decode the same models with the span edges learned from train "
        "(`medner.decoding.SpanEdges`). A model trained on train + dev has no held-out dev score. *Train s*: the "
        "longest run's wall seconds in this benchmark, which runs at `nice 19` beside other work (and may be paused "
        "meanwhile), so an upper bound; the default's clean training times are in default_model.md.", "",
        "| candidate | lever | seeds | dev F1 | test F1 | dev F1 + edges | test F1 + edges | test F1 D | test F1 T | "
        "test relaxed F1 | test token-weighted F1 | train s (max) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['name']} | {r['lever']} | {len(r['seeds'])} | {held_out(r, 'dev_entity_f1')} | "
          f"{mean_sd(r['test_entity_f1'])} | {held_out(r, 'dev_entity_f1_edges')} | "
          f"{mean_sd(r['test_entity_f1_edges'])} | {mean_sd(r['test_entity_f1_D'])} | "
          f"{mean_sd(r['test_entity_f1_T'])} | {mean_sd(r['test_entity_f1_relaxed'])} | "
          f"{mean_sd(r['test_token_weighted_f1'])} | {max(r['train_seconds']):.0f} |" for r in rows),
        *(["", "**Collapsed runs**, left out of every table (their model tags nothing: dev and test F1 0, the training "
           "loss stuck from the first epoch): " + "; ".join(f"{name} seed{'s' if len(seeds) > 1 else ''} "
                                                            f"{', '.join(map(str, seeds))}"
                                                            for name, seeds in collapses.items()) + "."]
          if collapses else []),
        *section(
            "Dropping unsure entities",
            "Decoded with span edges, then entities whose score (the served one: mean confidence of their words) is "
            "below a threshold are dropped; each run's threshold is the one its dev F1 prefers among "
            f"{', '.join(map(str, MIN_SCORES))} (0: none dropped).",
            ["| candidate | runs | thresholds | dev F1 | test F1 | the same runs' test F1 with edges alone |",
             "| --- | ---: | --- | ---: | ---: | ---: |"],
            [f"| {t['name']} | {len(t['seeds'])} | {', '.join(map(str, t['thresholds']))} | "
             f"{held_out(t, 'dev_entity_f1')} | {mean_sd(t['test_entity_f1'])} | "
             f"{mean_sd(t['test_entity_f1_edges'])} |" for t in thresholded]),
        *section(
            "Ensembles of a candidate's seeds",
            "The seeds' models as one (mean of their probabilities): as many encoder passes per note as seeds, so "
            "an option for accuracy at that cost, not a default. *Entity vote*: instead, each seed's model decoded "
            "alone (plain Viterbi) and the entities more than half of them predict kept. *Seeds alone*: the same "
            "seeds' mean test F1.",
            ["| candidate | seeds | dev F1 | test F1 | dev F1 + edges | test F1 + edges | test F1 + edges, min score "
             "(threshold) | dev F1, entity vote | test F1, entity vote | test F1 D | test F1 T | test relaxed F1 | "
             "seeds alone: test F1 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"],
            [f"| {e['name']} | {', '.join(map(str, e['seeds']))} | {held_out(e, e['dev']['entity_f1'])} | "
             f"{e['test']['entity_f1']:.3f} | {held_out(e, e['span_edges']['dev']['entity_f1'])} | "
             f"{e['span_edges']['test']['entity_f1']:.3f} | "
             f"{e['min_score']['test']['entity_f1']:.3f} ({e['min_score']['threshold']}) | "
             f"{vote(e, 'dev')} | {vote(e, 'test')} | "
             f"{e['test']['entity_f1_D']:.3f} | {e['test']['entity_f1_T']:.3f} | "
             f"{e['test']['entity_f1_relaxed']:.3f} | {statistics.mean(e['test_entity_f1_seeds_alone']):.3f} |"
             for e in ensembles]),
        *section(
            "Ensembles over seed groups (mean ± sd over ensembles)",
            "A candidate with several ensembles above (seeds kept in order, cut into groups of "
            f"{ENSEMBLE_SEEDS}; a last, smaller group is not counted): each ensemble counted once, as each seed is in "
            "the first table; plain Viterbi, "
            "the mean of probabilities and the entity vote side by side.",
            ["| candidate | ensembles | dev F1 | test F1 | test F1 D | test F1 T | dev F1, entity vote | "
             "test F1, entity vote | test F1 D, entity vote | test F1 T, entity vote | their seeds alone: test F1 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"],
            [f"| {o['name']} | {'; '.join(', '.join(map(str, s)) for s in o['seeds'])} | "
             f"{mean_sd(o['dev_entity_f1'])} | {mean_sd(o['test_entity_f1'])} | {mean_sd(o['test_entity_f1_D'])} | "
             f"{mean_sd(o['test_entity_f1_T'])} | "
             + " | ".join(over_vote(o, f"{k}_vote") for k in ("dev_entity_f1", "test_entity_f1", "test_entity_f1_D",
                                                           "test_entity_f1_T"))
             + f" | {mean_sd(o['test_entity_f1_seeds_alone'])} |" for o in over_ensembles]),
        *section(
            "Seeds averaged into one model (uniform soups)",
            "The same seed groups' weights averaged tensor by tensor into one model (`python benchmarks/accuracy.py "
            "soups`): the ensemble's members at one model's serving cost, if their weights average well. Decoded as "
            "the ensembles are (plain Viterbi, with the members' mean learned scores).",
            ["| candidate | seeds | dev F1 | test F1 | test F1 D | test F1 T | the ensemble of these seeds: test F1 | "
             "these seeds alone: test F1 |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"],
            [f"| {u['name']} | {', '.join(map(str, u['seeds']))} | {held_out(u, u['dev']['entity_f1'])} | "
             f"{u['test']['entity_f1']:.3f} | {u['test']['entity_f1_D']:.3f} | {u['test']['entity_f1_T']:.3f} | "
             + (f"{u['ensemble_test_entity_f1']:.3f}" if u["ensemble_test_entity_f1"] is not None else "-")
             + f" | {statistics.mean(u['test_entity_f1_seeds_alone']):.3f} |" for u in souped]),
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
          + (f"; teacher {', '.join(r['teacher'])}" if "teacher" in r else "") for r in rows),
        "", f"Hardware: {'; '.join(machines)}. Command: `python benchmarks/accuracy.py run && "
        "python benchmarks/accuracy.py report` (the distill-* candidates: `run --only NAME --teacher TEACHER`, the "
        "teacher their Parameters name; its run is `python flows/train_flow.py run --base-model mpnet "
        "--learning-rate 1e-4 --layer-decay 1.0 --span-edges false --bf16 true --seed 13`, the mpnet-lr1e-4-bf16 "
        "candidate's schedule).",
        *([f"Train s of {'; '.join(excluded)}: without the teacher's pass over the training sentences (run before "
           "training counted it)."] if excluded else []),
    ]
    everything = {"candidates": rows, "min_score": thresholded, "ensembles": ensembles, "soups": souped,
                  "over_ensembles": over_ensembles, "collapsed": collapses}
    write_results(RESULTS / "accuracy", lines, everything)


def ceilings(data_dir: str | None) -> None:
    """The ceiling of a sentence-level "has entities" gate: each kept model's dev and test F1 (span edges, the
    default decoding) with a perfect gate, one that drops every prediction in the sentences without a gold entity
    and nothing else. A trained "has entities" gate is at best right about every sentence, so this bounds what
    building one could give."""
    import numpy as np

    from medner.config import data_dir as resolve_data_dir
    from medner.decoding import SpanEdges, decode
    from medner.metrics import evaluate
    from medner.prepare import prepare_data

    data = prepare_data(resolve_data_dir(data_dir))
    edges = SpanEdges.learn((s.tokens, s.labels) for s in data.train)
    rows = []
    for path in sorted(LOG_PROBS.glob("*-s[0-9]*.npz")):
        kept, row = np.load(path), {"run": path.stem}
        for split in ("dev", "test"):
            sentences = getattr(data, split)
            log_probs = _per_sentence(kept[split], sentences)
            gold = [s.labels for s in sentences]
            predicted = [decode(lp, words=s.tokens, edges=edges) for lp, s in zip(log_probs, sentences)]
            gated = [p if any(label != "O" for label in g) else ["O"] * len(p) for p, g in zip(predicted, gold)]
            row[split] = {"edges": evaluate(gold, predicted), "perfect_gate": evaluate(gold, gated)}
        rows.append(row)
    if not rows:
        raise SystemExit(f"no kept log-probabilities in {LOG_PROBS}: `python benchmarks/accuracy.py run` keeps them")
    lines = [
        "# The ceiling of a sentence gate", "",
        "Each kept model decoded with span edges (the default), then with a **perfect** sentence-level gate: every "
        "prediction in a sentence without a gold entity dropped, nothing else changed. A trained \"has entities\" "
        "gate is at best right about every sentence, so these columns bound what building one could give.", "",
        "| run | dev F1 | dev F1, perfect gate | test F1 | test F1, perfect gate | test D, perfect gate | "
        "test T, perfect gate |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['run']} | {r['dev']['edges']['entity_f1']:.3f} | {r['dev']['perfect_gate']['entity_f1']:.3f} | "
          f"{r['test']['edges']['entity_f1']:.3f} | {r['test']['perfect_gate']['entity_f1']:.3f} | "
          f"{r['test']['perfect_gate']['entity_f1_D']:.3f} | {r['test']['perfect_gate']['entity_f1_T']:.3f} |"
          for r in rows),
        "", f"Data version {data.version}. Command: `python benchmarks/accuracy.py ceilings` (reads the log-"
        "probabilities `python benchmarks/accuracy.py run` keeps).",
    ]
    write_results(RESULTS / "accuracy_ceilings", lines, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("run", help="train every (candidate, seed) without a run file")
    train.add_argument("--only", nargs="*", default=[], help="candidate names (default: all of LEVER_GRID)")
    train.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    train.add_argument("--data-dir", help="the BeHealthy folder (default: medner.config.data_dir())")
    train.add_argument("--teacher", default="", help="the distillation candidates' teacher: a TrainFlow run "
                       "(FlowName/run-id) or a model folder, or several separated by commas (a seed ensemble)")
    again = sub.add_parser("ensembles", help="rewrite the ensemble files from the kept log-probabilities")
    again.add_argument("--only", nargs="*", default=[], help="candidate names (default: all of LEVER_GRID)")
    again.add_argument("--data-dir", help="the BeHealthy folder (default: medner.config.data_dir())")
    soup = sub.add_parser("soups", help="average each ensemble group's kept models into one and score it")
    soup.add_argument("--only", nargs="*", default=[], help="candidate names (default: all of LEVER_GRID)")
    soup.add_argument("--data-dir", help="the BeHealthy folder (default: medner.config.data_dir())")
    sub.add_parser("report", help="write benchmarks/results/accuracy.{md,json} from the run files")
    ceiling = sub.add_parser("ceilings", help="write benchmarks/results/accuracy_ceilings.{md,json} from the kept "
                             "log-probabilities")
    ceiling.add_argument("--data-dir", help="the BeHealthy folder (default: medner.config.data_dir())")
    args = parser.parse_args()
    if args.command == "run":
        run(args.only, args.seeds, args.data_dir, args.teacher)
    elif args.command == "ensembles":
        ensembles(args.only, args.data_dir)
    elif args.command == "soups":
        soups(args.only, args.data_dir)
    elif args.command == "ceilings":
        ceilings(args.data_dir)
    else:
        report()


if __name__ == "__main__":
    main()
