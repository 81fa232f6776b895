"""Candidates that ExperimentFlow compares on one data version and split: a CRF baseline with classic word
features and transformer fine-tunes (any TrainConfig field: learning rate, epochs, decoding, base model).

Every candidate trains on train, is selected on dev and reported on test; the challenger is chosen on dev
only, so the test split never influences a choice.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medner.config import TrainConfig
from medner.data import Sentence
from medner.labels import from_bio, to_bio
from medner.metrics import evaluate

KINDS = ("crf", "transformer")
CRF_PARAMS = {"c1": 0.1, "c2": 0.1, "max_iterations": 100}
DEFAULT_GRID = [
    {"name": "crf-baseline", "kind": "crf"},
    {"name": "minilm-lr1e-4", "kind": "transformer", "learning_rate": 1e-4},
    {"name": "minilm-lr1e-4-argmax", "kind": "transformer", "learning_rate": 1e-4, "decode": "argmax"},
    {"name": "minilm-lr5e-5-6ep", "kind": "transformer", "learning_rate": 5e-5, "epochs": 6},
]
LATENCY_SAMPLE = 100  # test sentences timed one by one for the latency column


class GridError(ValueError):
    """A candidate grid that cannot be run; the message says which candidate and why."""


@dataclass
class Candidate:
    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


def parse_grid(grid: str | Sequence[dict]) -> list[Candidate]:
    """Candidates from a JSON list (inline, or a path to a .json file) of ``{"name", "kind", **params}``."""
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
        params = {k: v for k, v in item.items() if k not in ("name", "kind")}
        known = set(CRF_PARAMS) if item["kind"] == "crf" else allowed
        if unknown := sorted(set(params) - known):
            raise GridError(f"candidate {item['name']!r}: unknown {item['kind']} parameter(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        if item["name"] in names:
            raise GridError(f"candidate {item['name']!r} appears twice")
        names.add(item["name"])
        candidates.append(Candidate(item["name"], item["kind"], params))
    return candidates


# --- CRF baseline --------------------------------------------------------------------------------

def word_features(tokens: Sequence[str], i: int) -> dict[str, Any]:
    """Classic CRF features of token ``i``: its shape and affixes and those of its neighbours."""
    def shape(prefix: str, word: str) -> dict[str, Any]:
        return {f"{prefix}lower": word.lower(), f"{prefix}suffix3": word[-3:].lower(),
                f"{prefix}istitle": word.istitle(), f"{prefix}isupper": word.isupper()}

    word = tokens[i]
    features: dict[str, Any] = {"bias": 1.0, **shape("", word), "prefix3": word[:3].lower(),
                                "suffix2": word[-2:].lower(), "isdigit": word.isdigit(),
                                "hasdigit": any(c.isdigit() for c in word), "hyphen": "-" in word}
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(tokens):
            features.update(shape(f"{offset:+d}:", tokens[j]))
        elif abs(offset) == 1:
            features["BOS" if offset < 0 else "EOS"] = True
    return features


def sentence_features(tokens: Sequence[str]) -> list[dict[str, Any]]:
    return [word_features(tokens, i) for i in range(len(tokens))]


def train_crf(sentences: Sequence[Sentence], **params: Any) -> Any:
    """A linear-chain CRF (sklearn-crfsuite, L-BFGS) on IOB2 tags."""
    import sklearn_crfsuite

    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", all_possible_transitions=True, **{**CRF_PARAMS, **params})
    crf.fit([sentence_features(s.tokens) for s in sentences], [to_bio(s.labels) for s in sentences])
    return crf


def crf_predict(crf: Any, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
    return [from_bio(tags) for tags in crf.predict([sentence_features(tokens) for tokens in sentences])]


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

    def row(self) -> dict[str, Any]:
        """The comparison-table row (no model files)."""
        return {k: v for k, v in asdict(self).items() if k != "model_files"}


def _median_latency_ms(predict_one: Any, sentences: Sequence[Sentence]) -> float:
    import statistics

    timings = []
    for sentence in sentences[:LATENCY_SAMPLE]:
        started = time.perf_counter()
        predict_one(sentence.tokens)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings) if timings else float("nan")


def run_candidate(candidate: Candidate, train: Sequence[Sentence], dev: Sequence[Sentence],
                  test: Sequence[Sentence], overrides: dict[str, Any] | None = None) -> CandidateResult:
    """Train ``candidate`` on train, score it on dev and test. ``overrides`` (transformer candidates
    only) apply on top of the candidate's parameters: tiny settings for tests, threads."""
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
            _median_latency_ms(lambda tokens: crf_predict(crf, [tokens]), test))

    from medner.training import evaluate_model, model_to_files, predict
    from medner.training import train as train_transformer

    config = TrainConfig(**{**candidate.params, **(overrides or {})})
    result = train_transformer(config, train, dev)
    files = model_to_files(result.model, result.tokenizer)
    test_metrics, _ = evaluate_model(result.model, result.tokenizer, test, config.decode)  # the model in memory
    return CandidateResult(
        candidate.name, candidate.kind, candidate.params, result.dev_metrics, test_metrics,
        result.train_seconds, sum(map(len, files.values())) / 2**20,
        _median_latency_ms(lambda tokens: predict(result.model, result.tokenizer, [tokens], config.decode), test),
        files)


def select_challenger(results: Sequence[CandidateResult]) -> CandidateResult:
    """The best servable candidate (one with model files: a transformer) on dev entity F1, ties going to
    the faster one; the CRF is a baseline to beat, not something Triton serves. Test scores are never read."""
    pool = [r for r in results if r.model_files] or list(results)
    return max(pool, key=lambda r: (round(r.dev["entity_f1"], 6), -r.latency_ms))
