"""The ``medner`` command line: the home of every operational subcommand."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

# Exit codes, the same for every command (README, "Exit codes").
EXIT_FAILED = 1  # the command ran and its work failed or was refused (failed notes, refused export or promotion)
EXIT_USAGE = 2  # the command was called wrongly: unknown option, bad choice, missing file (click's own code)
EXIT_WARNING, EXIT_CRITICAL = 3, 4  # `monitor check`: drift at that level (0: none)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


class Model(StrEnum):
    """A served model: fp32 or INT8."""

    ner = "ner"
    ner_int8 = "ner_int8"


class OutputFormat(StrEnum):
    jsonl = "jsonl"
    table = "table"


def _print_version(value: bool) -> None:
    if value:
        from medner import __version__

        typer.echo(f"medner {__version__}")
        raise typer.Exit()


app = typer.Typer(help="medner: disease and treatment extraction from clinical notes. Exit codes: 0 success, "
                  "1 the work failed or was refused, 2 usage error, 3/4 drift warning/critical (monitor check).",
                  no_args_is_help=True, rich_markup_mode=None)  # plain click errors: one line, greppable


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """medner: disease and treatment extraction from clinical notes."""


data_app = typer.Typer(help="Get, check and describe annotated data.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")
models_app = typer.Typer(help="The model registry: versions in a Triton repository and what is serving.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(models_app, name="models")
monitor_app = typer.Typer(help="Drift of live requests against the served model's reference profile.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(monitor_app, name="monitor")

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="BeHealthy folder (default: $MEDNER_DATA_DIR, else the cache)."),
]


@data_app.command("fetch")
def data_fetch(
    data_dir: DataDirOption = None,
    mirror: Annotated[str | None, typer.Option(help="Base URL of a copy of the corpus.")] = None,
) -> None:
    """Download the BeHealthy corpus (pinned commit) and verify each file's SHA-256."""
    from medner.config import data_dir as resolve_data_dir
    from medner.fetch import FetchError, fetch

    target = resolve_data_dir(data_dir)
    try:
        downloaded = fetch(target, mirror)
    except FetchError as err:
        fail(str(err))
    typer.echo(f"{target}: {'downloaded ' + ', '.join(downloaded) if downloaded else 'already complete'}"
               " (checksums verified)")


@data_app.command("check")
def data_check(
    paths: Annotated[list[Path] | None, typer.Argument(help="*.jsonl or *_sent files; default: the corpus.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Validate annotated data and print corpus statistics as JSON."""
    from medner.config import data_dir as resolve_data_dir
    from medner.data import DataFormatError, corpus_stats, read_annotations, read_behealthy

    try:
        if paths:
            splits = {str(p): read_annotations(p) for p in paths}
        else:
            splits = read_behealthy(resolve_data_dir(data_dir))
    except (DataFormatError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(json.dumps({name: corpus_stats(s) for name, s in splits.items()}, indent=2))


RepositoryOption = Annotated[Path, typer.Option(envvar="MEDNER_REPOSITORY", help="Triton model repository.")]


@app.command("export")
def export_command(
    run: Annotated[str, typer.Option(help="TrainFlow run, or ExperimentFlow run (its challenger), as a pathspec "
                                          "(default: the latest successful TrainFlow run).")] = "",
    model_dir: Annotated[Path | None, typer.Option(help="Export this model folder instead of a run.")] = None,
    repository: RepositoryOption = Path("model_repository"),
    data_dir: DataDirOption = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads for the gates.")] = 1,
) -> None:
    """Export a trained model to ONNX (fp32 + INT8) as a new version in the model repository."""
    import tempfile

    from export.onnx_export import ExportRefused, export_model
    from medner.config import data_dir as resolve_data_dir
    from medner.data import read_behealthy
    from medner.training import files_to_dir

    with tempfile.TemporaryDirectory() as tmp:
        if model_dir is None:
            from medner.pipeline import run_model

            try:
                source = run_model(run)
            except ValueError as err:
                fail(str(err))
            model_dir = files_to_dir(source.model_files, tmp)
            test, train, lineage, method = source.test, source.train, source.lineage, source.method
        else:
            splits = read_behealthy(resolve_data_dir(data_dir))
            test, train = splits["test"], splits["train"]
            lineage, method = {"source": str(model_dir.resolve())}, "viterbi"
        try:
            version = export_model(model_dir, repository, test, lineage, method, threads, train)
        except ExportRefused as err:
            fail(f"export refused: {err}")
    record = json.loads((repository / "ner_encoder" / str(version) / "lineage.json").read_text())
    typer.echo(json.dumps({"repository": str(repository), "version": version, "gates": record["gates"],
                           "entity_f1_fp32": record["metrics_fp32"]["entity_f1"],
                           "entity_f1_int8": record["metrics_int8"]["entity_f1"]}, indent=2))


@models_app.command("list")
def models_list(
    repository: RepositoryOption = Path("model_repository"),
    url: Annotated[str | None, typer.Option(help="Triton gRPC address: mark the versions it has loaded.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per version.")] = False,
) -> None:
    """Versions of the served models, newest first: metrics, gates, provenance, and which is serving."""
    from medner.registry import champion, describe, serving, versions
    from medner.triton import admin_key

    found = versions(repository)
    if not found:
        fail(f"{repository}: no model versions (run `medner export`)")
    try:
        loaded = serving(url, admin_key(create=False)) if url else None
    except Exception as err:  # unreachable server: still list the repository
        typer.secho(f"warning: cannot read what {url} serves: {err}", fg="yellow", err=True)
        loaded = None
    for row in describe(found, loaded, champion(repository)):
        if as_json:
            typer.echo(json.dumps(row))
            continue
        f1 = " ".join(f"{k[-4:]}={v:.4f}" for k, v in row.items() if k.startswith("entity_f1") and v is not None)
        gates = " ".join(f"{k}:{'pass' if v else 'FAIL'}" for k, v in row["gates"].items())
        typer.echo(f"v{row['version']:<4} {row['serving'] or '-':<12} {row['exported_at'] or '?':<21} {f1:<27} "
                   f"{gates:<33} {row['source'] or '?'} data={row['data_version'] or '?'} "
                   f"code={(row['code_version'] or '?')[:12]}")


UrlOption = Annotated[str, typer.Option(help="gRPC address of the Triton server started by `medner serve`.")]
AdminKeyFileOption = Annotated[Path | None, typer.Option(
    help="File holding the admin key (default: $MEDNER_ADMIN_KEY, else ~/.cache/medner/admin-key).")]
GpuOption = Annotated[bool, typer.Option(help="The server runs the GPU configurations (`medner serve --gpu`).")]


def _admin_key_or_exit(key_file: Path | None) -> str:
    from medner.triton import admin_key

    key = admin_key(key_file, create=False)
    if not key:
        fail("no admin key: set $MEDNER_ADMIN_KEY or pass --admin-key-file (the key `medner serve` was started "
             "with)", EXIT_USAGE)
    return key


@models_app.command("promote")
def models_promote(
    version: Annotated[int | None, typer.Argument(help="Challenger version (default: the newest).")] = None,
    repository: RepositoryOption = Path("model_repository"),
    url: UrlOption = "127.0.0.1:8001",
    margin: Annotated[float, typer.Option(help="Test entity F1 (0-1) the challenger must gain.")] = 0.0,
    tolerance: Annotated[float, typer.Option(help="F1 difference counted as a tie, settled by speed.")] = 0.002,
    keep_refused: Annotated[bool, typer.Option(help="Keep a refused version's folders.")] = False,
    gpu: GpuOption = False,
    admin_key_file: AdminKeyFileOption = None,
) -> None:
    """Gate a challenger against the champion (export gates, test F1, smoke test on a throwaway Triton) and, if
    it passes, serve it with no downtime; the champion stays for `medner models rollback`. Exit 1 if refused."""
    from medner.promotion import PromotionError, promote

    try:
        decision = promote(repository, url, _admin_key_or_exit(admin_key_file), version, margin, tolerance, gpu,
                           keep_refused)
    except PromotionError as err:
        fail(f"{err}", EXIT_USAGE)
    for gate in decision.gates:
        typer.echo(f"  {gate.name:<8} {'pass' if gate.passed else 'FAIL'}  {gate.detail}")
    for note in decision.notes:
        typer.echo(f"  {note}")
    if decision.promoted:
        typer.secho(f"promoted v{decision.version} (was v{decision.champion}); `medner models rollback` undoes it",
                    fg="green")
    else:
        fail(f"refused v{decision.version}; v{decision.champion} keeps serving")


@models_app.command("rollback")
def models_rollback(
    to: Annotated[int | None, typer.Option(help="Version to serve (default: the one the champion replaced).")] = None,
    repository: RepositoryOption = Path("model_repository"),
    url: UrlOption = "127.0.0.1:8001",
    gpu: GpuOption = False,
    admin_key_file: AdminKeyFileOption = None,
) -> None:
    """Serve the previous champion again, with no downtime."""
    from medner.promotion import PromotionError, rollback

    try:
        entry = rollback(repository, url, _admin_key_or_exit(admin_key_file), to, gpu)
    except PromotionError as err:
        fail(f"{err}", EXIT_USAGE)
    typer.secho(f"rolled back to v{entry['version']} (was v{entry['champion']}); {entry['notes'][0]}", fg="green")


@app.command()
def serve(
    repository: RepositoryOption = Path("model_repository"),
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = "127.0.0.1",
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
    gpu: Annotated[bool, typer.Option(help="Use the GPU configurations (configs/gpu.pbtxt).")] = False,
    log_file: Annotated[Path | None, typer.Option(help="Server log (default: none).")] = None,
    admin_key_file: Annotated[Path | None, typer.Option(
        help="File holding the admin key (default: $MEDNER_ADMIN_KEY, else ~/.cache/medner/admin-key, created "
             "with a random key). Loading/unloading models and other administrative endpoints need it.")] = None,
    profile_dir: Annotated[str | None, typer.Option(
        envvar="MEDNER_PROFILE_DIR", help="Write rolling whylogs profiles of every note's features (no text) "
        "to this folder or s3://bucket/prefix (default: off).")] = None,
    profile_window: Annotated[float, typer.Option(help="Profile window length in seconds.")] = 300.0,
) -> None:
    """Run Triton Inference Server on the repository until SIGINT/SIGTERM."""
    import signal
    import threading

    from medner.registry import record_first_champion
    from medner.triton import TritonError, TritonServer, admin_key

    server = TritonServer(repository, host, grpc_port, http_port, metrics_port, gpu=gpu, log_file=log_file,
                          admin_key=admin_key(admin_key_file), profile_dir=profile_dir,
                          profile_window_seconds=profile_window,
                          version=record_first_champion(repository))  # what serves: the recorded champion
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except TritonError as err:
        fail(str(err))
    typer.echo(f"Triton ready: gRPC {server.grpc_url}, HTTP {host}:{http_port}, metrics {host}:{metrics_port}"
               f"{' (GPU configs)' if gpu else ''}{f'; profiles to {profile_dir}' if profile_dir else ''}"
               "; Ctrl-C stops it")
    while not stop.wait(1.0):
        if server.process is not None and server.process.poll() is not None:
            fail(f"tritonserver exited with code {server.process.returncode}")
    typer.echo("stopping (in-flight requests finish first)")
    server.stop()


def _read_notes(inputs: list[Path]) -> list[tuple[str, bytes]]:
    """(id, note) pairs: lines of text files (``file:line``), .txt files of folders (one note each,
    id = file name), or standard input lines when no input or ``-`` is given."""
    import sys

    notes: list[tuple[str, bytes]] = []
    for source in inputs or [Path("-")]:
        if str(source) == "-":
            notes += [(f"stdin:{n}", line.rstrip(b"\r\n")) for n, line in enumerate(sys.stdin.buffer, 1)
                      if line.strip()]
        elif source.is_dir():
            notes += [(p.name, p.read_bytes()) for p in sorted(source.glob("*.txt"))]
        else:
            notes += [(f"{source}:{n}", line) for n, line in enumerate(source.read_bytes().splitlines(), 1)
                      if line.strip()]
    return notes


@app.command()
def extract(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Text files (a note per line), folders of .txt, or - (standard input, the default).", exists=True,
        allow_dash=True)] = None,
    url: Annotated[str, typer.Option(help="Triton gRPC address.")] = "127.0.0.1:8001",
    local: Annotated[Path | None, typer.Option(help="Run in-process on this model repository (no server).",
                                               exists=True, file_okay=False)] = None,
    model: Annotated[Model, typer.Option(help="Served model: fp32 or INT8.")] = Model.ner,
    output: Annotated[OutputFormat, typer.Option("--format", help="One JSON object per note, or a table.")
                      ] = OutputFormat.jsonl,
    concurrency: int = 16,
    timeout: Annotated[float, typer.Option(help="Seconds per request (each retry gets its own).")] = 60.0,
) -> None:
    """Extract diseases and treatments from notes, through Triton (--url) or in-process (--local). Every note
    gets a line: its entities or its error. Exit 1 when any note failed (their ids are listed on stderr)."""
    notes = _read_notes(inputs or [])
    texts = [note for _, note in notes]
    if local is not None:
        from clients.local import LocalNerModel

        results = LocalNerModel(local, model).extract(texts, return_exceptions=True)
    else:
        from clients.ner_client import NerClient

        with NerClient(url, model=model, timeout=timeout, concurrency=concurrency) as client:
            results = client.extract(texts, return_exceptions=True)
    failed: list[str] = []
    for (note_id, _), result in zip(notes, results, strict=True):
        if isinstance(result, Exception):
            failed.append(note_id)
            typer.echo(json.dumps({"id": note_id, "error": str(result)}) if output is OutputFormat.jsonl
                       else f"{note_id}\tERROR\t{result}")
        elif output is OutputFormat.jsonl:
            typer.echo(json.dumps({"id": note_id, "entities": result}, ensure_ascii=False))
        else:
            for e in result:
                typer.echo(f"{note_id}\t{e['label']}\t{e['start']}-{e['end']}\t{e['score']:.2f}\t{e['text']}")
    if failed:
        shown = ", ".join(failed[:20]) + (f" and {len(failed) - 20} more" if len(failed) > 20 else "")
        fail(f"{len(failed)} of {len(notes)} notes failed: {shown}")


@monitor_app.command("check")
def monitor_check(
    profile_dir: Annotated[str, typer.Option(help="Profile store root: a folder or s3://bucket/prefix.")],
    model: Annotated[Model, typer.Option(help="Served model whose profiles to check.")] = Model.ner,
    repository: RepositoryOption = Path("model_repository"),
    reference: Annotated[str | None, typer.Option(
        help="Reference profile (default: reference_profile.bin of the champion version).")] = None,
    window: Annotated[str, typer.Option(help="Window length ending now (or at --end): 30m, 1h, 1d.")] = "1h",
    start: Annotated[str | None, typer.Option(help="Window start, ISO 8601 (UTC unless an offset is given).")] = None,
    end: Annotated[str | None, typer.Option(help="Window end, ISO 8601 (default: now).")] = None,
    warning: Annotated[float | None, typer.Option(help="Warning threshold on the combined score.")] = None,
    critical: Annotated[float | None, typer.Option(help="Critical threshold on the combined score.")] = None,
    min_notes: Annotated[int | None, typer.Option(help="Fewer notes than this: level none.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write whylogs' HTML drift report here.")] = None,
) -> None:
    """Compare a window of request profiles with the reference profile; print the drift report as JSON.
    Exit 0 when the level is none, 3 on warning, 4 on critical, 1 when there is nothing to compare."""
    from dataclasses import asdict

    from monitoring.drift import (
        DriftThresholds,
        compare,
        default_reference,
        drift_report_html,
        time_window,
        window_views,
    )

    try:
        window_start, window_end = time_window(window, start, end)
        defaults = asdict(DriftThresholds())
        chosen = {"warning": warning, "critical": critical, "min_notes": min_notes}
        thresholds = DriftThresholds(**{**defaults, **{k: v for k, v in chosen.items() if v is not None}})
        reference = reference or str(default_reference(repository, model))
        target, reference_view, profiles = window_views(profile_dir, model, reference, window_start, window_end)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    if profiles == 0:
        fail(f"no {model} profiles in {profile_dir} for {window_start:%Y-%m-%dT%H:%M:%SZ} .. "
             f"{window_end:%Y-%m-%dT%H:%M:%SZ}")
    report = compare(target, reference_view, window_start, window_end, thresholds, profiles)
    typer.echo(json.dumps(report.to_dict(), indent=2))
    if html is not None:
        html.write_text(drift_report_html(target, reference_view))
        typer.echo(f"HTML drift report: {html}", err=True)
    if report.level != "none":  # cron and schedulers see the level without parsing the JSON
        raise typer.Exit(EXIT_WARNING if report.level == "warning" else EXIT_CRITICAL)


BackendOption = Annotated[str, typer.Option(help="Where flows start: local (Metaflow Runner) or stepfunctions.")]
DecisionLogOption = Annotated[str, typer.Option(
    "--log", envvar="MEDNER_DECISION_LOG",
    help="Decision log: a JSONL file or s3://bucket/prefix (an object per record).")]
EndpointOption = Annotated[str | None, typer.Option(help="AWS endpoint URL for stepfunctions (default: boto3's).")]


def _json_option(text: str, name: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(f"not JSON ({err.msg})", param_hint=name) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("expected a JSON object of flow parameters", param_hint=name)
    return value


def _backend_options(backend: str, endpoint_url: str | None) -> dict:
    return {"endpoint_url": endpoint_url} if backend == "stepfunctions" and endpoint_url else {}


@monitor_app.command("act")
def monitor_act(
    report: Annotated[Path, typer.Argument(help="Drift report JSON (the output of `medner monitor check`); - reads "
                                           "stdin.", exists=True, dir_okay=False, allow_dash=True)],
    backend: BackendOption = "local",
    log: DecisionLogOption = "monitoring/decisions.jsonl",
    train_params: Annotated[str, typer.Option(help="TrainFlow parameters for a retrain, JSON.")] = "{}",
    experiment_params: Annotated[str, typer.Option(help="ExperimentFlow parameters, JSON.")] = "{}",
    cooldown_hours: Annotated[float, typer.Option(help="No new run for the same episode within this.")] = 24.0,
    endpoint_url: EndpointOption = None,
) -> None:
    """Act on a drift report: warning -> TrainFlow, critical -> ExperimentFlow + alert; print the decision."""
    import sys
    from datetime import timedelta

    from monitoring.triggers import TriggerError, act

    source = "stdin" if str(report) == "-" else str(report)
    try:
        data = json.loads(sys.stdin.read() if str(report) == "-" else report.read_text())
    except json.JSONDecodeError as err:
        fail(f"{source}: not a drift report: not JSON (line {err.lineno}: {err.msg})", EXIT_USAGE)
    parameters = {"TrainFlow": _json_option(train_params, "--train-params"),
                  "ExperimentFlow": _json_option(experiment_params, "--experiment-params")}
    try:
        decision = act(data, backend, log, parameters=parameters, cooldown=timedelta(hours=cooldown_hours),
                       backend_options=_backend_options(backend, endpoint_url))
    except (TriggerError, ValueError) as err:
        fail(str(err))
    typer.echo(json.dumps(decision, indent=2))


@monitor_app.command("inbox")
def monitor_inbox(
    inbox: Annotated[Path, typer.Option(help="Folder where new annotated files (*.jsonl, *_sent/*_label) arrive.")],
    backend: BackendOption = "local",
    log: DecisionLogOption = "monitoring/decisions.jsonl",
    accepted: Annotated[Path | None, typer.Option(help="Where valid files go (default: INBOX/accepted).")] = None,
    data_params: Annotated[str, typer.Option(help="Extra DataFlow parameters, JSON.")] = "{}",
    train_params: Annotated[str, typer.Option(help="TrainFlow parameters (local backend), JSON.")] = "{}",
    endpoint_url: EndpointOption = None,
) -> None:
    """Validate new files in the inbox; valid ones run DataFlow -> TrainFlow, malformed ones are rejected (exit 2)."""
    from monitoring.inbox import process_inbox
    from monitoring.triggers import TriggerError

    try:
        result = process_inbox(inbox, backend, log, accepted_dir=accepted,
                               data_parameters=_json_option(data_params, "--data-params"),
                               train_parameters=_json_option(train_params, "--train-params"),
                               backend_options=_backend_options(backend, endpoint_url))
    except (TriggerError, FileNotFoundError) as err:
        fail(str(err))
    for name, error in result.rejected.items():
        typer.secho(f"rejected {name}: {error}", fg="red", err=True)
    typer.echo(json.dumps({"accepted": result.accepted, "rejected": result.rejected,
                           "runs": [d["target"] for d in result.decisions if d.get("target")]}, indent=2))
    if result.rejected:
        raise typer.Exit(2)  # something needs a person's attention: say so to cron / the scheduler


@monitor_app.command("quality")
def monitor_quality(
    files: Annotated[list[Path], typer.Argument(help="Annotated samples of live traffic: *.jsonl or *_sent files.")],
    repository: RepositoryOption = Path("model_repository"),
    url: Annotated[str | None, typer.Option(help="Score a live server (gRPC) instead of the champion version "
                                            "in-process.")] = None,
    model: Annotated[Model, typer.Option(help="Served model to score.")] = Model.ner,
    max_drop: Annotated[float, typer.Option(help="Entity F1 drop below the champion treated as critical.")] = 0.05,
    min_sentences: Annotated[int, typer.Option(help="Fewer annotated sentences than this: no verdict.")] = 300,
    trigger: Annotated[bool, typer.Option(help="Act on a drop (ExperimentFlow + alert) and record it.")] = False,
    backend: BackendOption = "local",
    log: DecisionLogOption = "monitoring/decisions.jsonl",
    experiment_params: Annotated[str, typer.Option(help="ExperimentFlow parameters, JSON.")] = "{}",
    endpoint_url: EndpointOption = None,
) -> None:
    """Entity F1 of the served model on annotated live samples against the champion's test F1; print JSON."""
    from medner.data import DataFormatError
    from monitoring.quality import check_quality, quality_reason
    from monitoring.triggers import TriggerError, act

    try:
        report = check_quality(files, repository, url, model, max_drop, min_sentences)
        if trigger:
            report["decision"] = act(report, backend, log, reason=quality_reason(report),
                                     parameters={"ExperimentFlow": _json_option(experiment_params,
                                                                                "--experiment-params")},
                                     backend_options=_backend_options(backend, endpoint_url))
    except (DataFormatError, FileNotFoundError, ValueError, TriggerError) as err:
        fail(str(err))
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    app()
