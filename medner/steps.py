"""The work behind the flows' steps, as plain functions tests can call directly."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medner.config import DEFAULT_UAT_MIN_F1, PRODUCTION_BRANCH, PROJECT, cache_dir
from medner.config import data_dir as resolve_data_dir
from medner.data import Sentence, read_behealthy
from medner.prepare import prepare_data
from medner.registry import lineage, serving_record, versions
from medner.runs import all_namespaces, get_run, latest_successful_run, resolve_branch

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.


@dataclass
class FlowData:
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    version: str
    source: str  # a DataFlow run pathspec, or the folder the data was prepared from


def load_data(data_run: str = "", data_dir: str = "", branch: str | None = None) -> FlowData:
    """Data for training: the DataFlow run ``data_run``; else, unless ``data_dir`` is given, the latest
    successful DataFlow run on the @project ``branch`` (a flow passes its own: production trains on production
    data; None: the current namespace); else the corpus prepared here (same code as DataFlow)."""

    if data_run:
        with all_namespaces():  # a run named by pathspec is the caller's explicit choice, whoever ran it
            run = get_run(data_run)
    else:
        run = None if data_dir else latest_successful_run("DataFlow", branch)
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


def evaluate_test_split(model_files: dict[str, bytes], test: Sequence[Sentence], decoder: str) -> Evaluation:
    """Metrics of a stored model on the test split, with the ``decoder`` (and the model's span edges) and with
    argmax."""
    from medner.decoding import SpanEdges, decode
    from medner.inference import sentence_log_probs, torch_encoder
    from medner.metrics import confusion_matrix, evaluate
    from medner.model_io import files_to_dir, load_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = files_to_dir(model_files, tmp)
        tokenizer, model, edges = *load_model(model_dir), SpanEdges.load(model_dir)
    log_probs = sentence_log_probs([s.tokens for s in test], tokenizer, torch_encoder(model))
    gold = [s.labels for s in test]
    predictions = [decode(lp, decoder, s.tokens, edges) for lp, s in zip(log_probs, test)]
    return Evaluation(
        metrics=evaluate(gold, predictions),
        metrics_argmax=evaluate(gold, [decode(lp, "argmax") for lp in log_probs]),
        confusion=confusion_matrix(gold, predictions),
        predictions=predictions,
    )


@dataclass
class StoredModel:
    """A trained model stored in a flow run, with what export needs to gate and describe it."""

    model_files: dict[str, bytes]
    train: list[Sentence]
    test: list[Sentence]
    lineage: dict
    decoder: str  # the decoder it was evaluated with
    dev: list[Sentence]  # held out of training: what the served model's accuracy estimate is calibrated on


def model_from_run(pathspec: str = "", branch: str = PRODUCTION_BRANCH) -> StoredModel:
    """The model of a TrainFlow run, or the challenger of an ExperimentFlow run (``FlowName/run-id``;
    default: the latest successful TrainFlow run on the @project ``branch``, production unless told another)."""

    with all_namespaces():  # the run may be another user's (a scheduler's)
        return _model_from_run(pathspec, branch)


def _model_from_run(pathspec: str, branch: str) -> StoredModel:

    run = get_run(pathspec) if pathspec else latest_successful_run("TrainFlow", branch)
    if run is None:
        raise ValueError(f"no successful TrainFlow run on branch {resolve_branch(branch)!r} of project {PROJECT}: "
                         "production runs come from `python flows/train_flow.py --production run` or a --production "
                         "deployment; --branch user exports your own latest run, --run a given one")
    record = {"source": run.pathspec, "data_version": run.data.data_version}
    if run.pathspec.startswith("ExperimentFlow/"):
        if not run.data.challenger_model_files:
            raise ValueError(f"{run.pathspec}: its challenger ({run.data.challenger}) is not a servable model")
        row = (run.data.challenger_row if "challenger_row" in run.data  # the chosen seed's run
               else next(r for r in run.data.results if r["name"] == run.data.challenger))
        start = run["start"].task.data
        record.update(candidate=row["name"], train_metrics=row["test"], config=row["params"])
        return StoredModel(run.data.challenger_model_files, start.train_data, start.test_data, record,
                           row["params"].get("decode", "viterbi"), start.dev_data)
    record.update(train_metrics=run.data.metrics, config=run.data.config)
    return StoredModel(run.data.model_files, run.data.train_data, run.data.test_data, record,
                       run.data.config["decode"], run.data.dev_data)


def model_folder(source: str) -> Path:
    """A trained model as a folder: a folder as it is, or the model of a TrainFlow run / the challenger of an
    ExperimentFlow run (``FlowName/run-id``), written once into ``$MEDNER_CACHE_DIR/models/``; several separated by
    commas: their seed ensemble (:func:`medner.model_io.write_ensemble`). A distillation
    teacher (TrainFlow's ``--teacher``) and the benchmarks' models are named this way."""
    from medner.model_io import ENSEMBLE_FILE, files_to_dir, model_names, write_ensemble

    if Path(source).is_dir():
        return Path(source)
    names = model_names(source)
    if len(names) > 1:  # a seed ensemble of these runs or folders: one folder, written once
        folder = cache_dir() / "models" / "ensemble-{}".format("-".join(n.replace("/", "-") for n in names))
        if not (folder / ENSEMBLE_FILE).is_file():
            write_ensemble([model_folder(name) for name in names], folder, names)
        return folder
    if source.count("/") != 1:
        raise ValueError(f"{source!r}: neither a model folder nor a run pathspec (FlowName/run-id)")
    folder = cache_dir() / "models" / source.replace("/", "-")
    if not (folder / "config.json").is_file():
        files_to_dir(model_from_run(source).model_files, folder)
    return folder


@dataclass
class _Trained:
    folder: Path
    train: list[Sentence]
    test: list[Sentence]
    lineage: dict
    decoder: str
    dev: list[Sentence]


def _stored_models(pathspecs: list[str], branch: str, tmp: Path) -> _Trained:
    """The model of one run, or the runs' models as one seed ensemble (:func:`medner.model_io.write_ensemble`:
    their mean probabilities), in a folder under ``tmp``; the runs must share their data version."""
    from medner.model_io import files_to_dir, write_ensemble

    stored = [model_from_run(pathspec, branch) for pathspec in pathspecs]
    folders = [files_to_dir(s.model_files, tmp / f"member-{i}") for i, s in enumerate(stored)]
    first = stored[0]
    if len(stored) == 1:
        return _Trained(folders[0], first.train, first.test, first.lineage, first.decoder, first.dev)
    if len({s.lineage["data_version"] for s in stored}) > 1:
        raise ValueError("a seed ensemble's runs must share a data version: "
                         + ", ".join(f"{s.lineage['source']} {s.lineage['data_version']}" for s in stored))
    sources = [s.lineage["source"] for s in stored]
    lineage = {**first.lineage, "source": ",".join(sources), "ensemble": sources,
               "train_metrics": {s.lineage["source"]: s.lineage.get("train_metrics") for s in stored}}
    return _Trained(write_ensemble(folders, tmp / "ensemble", sources), first.train, first.test, lineage,
                    first.decoder, first.dev)


def export_run_or_folder(*, run: str = "", branch: str = PRODUCTION_BRANCH, model_dir: Path | None = None,
                         repository: str | Path, data_dir: str | Path | None = None, threads: int = 1
                         ) -> tuple[int, dict]:
    """Export the model of a flow ``run`` (default: the latest TrainFlow run on ``branch``, see
    :func:`model_from_run`; several runs separated by commas: their seed ensemble as one model), or the model
    folder ``model_dir`` gated on the corpus in ``data_dir``, as the next version of ``repository`` (a folder or
    ``s3://bucket/prefix``). Returns (version, its lineage record). Raises ValueError when there is no such run,
    ExportRefused when a gate refuses the model."""
    from export.onnx_export import export_model
    from medner.model_io import model_names
    from medner.s3 import opened

    with tempfile.TemporaryDirectory() as tmp, opened(repository, full=False) as folder:
        if model_dir is None:
            source = _stored_models(model_names(run) or [""], branch, Path(tmp))
            trained = source.folder
            test, train, record, decoder = source.test, source.train, source.lineage, source.decoder
            dev = source.dev
        else:  # a folder's training data is unknown: no sentence is known to be held out of it
            splits = read_behealthy(resolve_data_dir(data_dir))
            trained, test, train, dev = model_dir, splits["test"], splits["train"], None
            record, decoder = {"source": str(model_dir.resolve())}, "viterbi"
        version = export_model(trained, folder, test=test, lineage=record, decoder=decoder, threads=threads,
                               train=train, calibration=dev)
        return version, lineage(folder, version)


def publish(*, source: str, model_files: dict[str, bytes], train: Sequence[Sentence], test: Sequence[Sentence],
            dev: Sequence[Sentence] = (), metrics: dict, config: dict, data_version: str, repository: str,
            promote: bool = False, promote_url: str = "", uat_min_f1: float = DEFAULT_UAT_MIN_F1,
            candidate: str = "") -> tuple[int | None, dict | None]:
    """TrainFlow's and ExperimentFlow's last step: export the model (ExperimentFlow's: the ``candidate`` it chose)
    as a new version of ``repository`` (a folder or ``s3://bucket/prefix``; nothing without one) and, with
    ``promote``, promote it through every gate (acceptance notes: ``uat_min_f1``): the record servers follow, and
    the server at ``promote_url`` (which implies ``promote``) at once. ``dev``: the
    sentences held out of training, which the served models' accuracy estimate is calibrated on
    (:mod:`monitoring.estimation`). Returns (version or None, promotion decision or None). A refused export or
    promotion is reported, not raised: the run and the serving champion stay valid. Idempotent per ``source``: a
    retried step finds the version its run exported (by lineage) and neither exports nor promotes it again."""
    if not repository:
        return None, None  # before importing export: a run that exports nothing needs none of it
    from export.onnx_export import ExportRefused, export_model
    from medner.model_io import files_to_dir
    from medner.s3 import opened

    record = {"source": source, "data_version": data_version, "train_metrics": metrics, "config": config,
               **({"candidate": candidate} if candidate else {})}
    with tempfile.TemporaryDirectory() as tmp, opened(repository, full=False) as folder:
        done = [v.version for v in versions(folder) if v.lineage.get("source") == source]
        if done:  # a retried or resumed step: this run's model is a version already
            version, serving = done[-1], serving_record(folder)["version"]
            print(f"version {version} was exported from {source} already: not exported again")
            if serving == version:
                return version, None
        else:
            try:
                version = export_model(files_to_dir(model_files, tmp), folder, test=test, lineage=record,
                                       decoder=config.get("decode", "viterbi"), train=train, calibration=dev)
            except ExportRefused as err:
                print(f"export refused: {err}")
                return None, None
    if not (promote or promote_url):
        return version, None
    from medner.promotion import promote as promote_version
    from medner.triton_control import admin_key

    decision = promote_version(repository, promote_url or None, admin_key(create=False) if promote_url else None,
                               version=version, uat_min_f1=uat_min_f1)
    for gate in decision.gates:
        print(f"{gate.name}: {'pass' if gate.passed else 'FAIL'} {gate.detail}")
    return version, decision.to_dict()
