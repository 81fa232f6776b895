"""The work behind the flows' steps, as plain functions tests can call directly."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from medner.data import Sentence


@dataclass
class FlowData:
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    version: str
    source: str  # a DataFlow run pathspec, or the folder the data was prepared from


def load_data(data_run: str = "", data_dir: str = "") -> FlowData:
    """Data for training: the DataFlow run ``data_run``; else, unless ``data_dir`` is given, the
    latest successful DataFlow run; else the corpus prepared here (same code as DataFlow)."""
    from metaflow import Flow, Run
    from metaflow.exception import MetaflowNotFound

    from medner.config import data_dir as resolve_data_dir
    from medner.data import prepare_data

    run = None
    if data_run:
        run = Run(data_run)
    elif not data_dir:
        try:
            run = Flow("DataFlow").latest_successful_run
        except MetaflowNotFound:
            run = None
    if run is not None:
        d = run.data
        return FlowData(d.train, d.dev, d.test, d.data_version, run.pathspec)
    folder = resolve_data_dir(data_dir)
    prepared = prepare_data(folder)
    return FlowData(prepared.train, prepared.dev, prepared.test, prepared.version, str(folder))


@dataclass
class Evaluation:
    metrics: dict[str, float]
    metrics_argmax: dict[str, float]
    confusion: dict[str, dict[str, int]]
    predictions: list[list[str]]


def evaluate_test_split(model_files: dict[str, bytes], test: Sequence[Sentence], method: str) -> Evaluation:
    """Metrics of a stored model on the test split, with ``method`` decoding and with argmax."""
    from medner.decoding import decode
    from medner.inference import sentence_log_probs, torch_encoder
    from medner.metrics import confusion_matrix, evaluate
    from medner.training import files_to_dir, load_model

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, model = load_model(files_to_dir(model_files, tmp))
    log_probs = sentence_log_probs([s.tokens for s in test], tokenizer, torch_encoder(model))
    gold = [s.labels for s in test]
    predictions = [decode(lp, method) for lp in log_probs]
    return Evaluation(
        metrics=evaluate(gold, predictions),
        metrics_argmax=evaluate(gold, [decode(lp, "argmax") for lp in log_probs]),
        confusion=confusion_matrix(gold, predictions),
        predictions=predictions,
    )
