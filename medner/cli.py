"""The ``medner`` command line: the home of every operational subcommand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="medner: disease and treatment extraction from clinical notes.", no_args_is_help=True)
data_app = typer.Typer(help="Get, check and describe annotated data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
models_app = typer.Typer(help="The model registry: versions in a Triton repository and what is serving.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

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
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
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
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({name: corpus_stats(s) for name, s in splits.items()}, indent=2))


RepositoryOption = Annotated[Path, typer.Option(envvar="MEDNER_REPOSITORY", help="Triton model repository.")]


@app.command("export")
def export_command(
    run: Annotated[str, typer.Option(help="TrainFlow run pathspec (default: latest successful).")] = "",
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
            from metaflow import Flow, Run

            source = Run(run) if run else Flow("TrainFlow").latest_successful_run
            model_dir = files_to_dir(source.data.model_files, tmp)
            test = source.data.test_data
            lineage = {"source": source.pathspec, "data_version": source.data.data_version,
                       "train_metrics": source.data.metrics, "config": source.data.config}
            method = source.data.config["decode"]
        else:
            test = read_behealthy(resolve_data_dir(data_dir))["test"]
            lineage, method = {"source": str(model_dir.resolve())}, "viterbi"
        try:
            version = export_model(model_dir, repository, test, lineage, method, threads)
        except ExportRefused as err:
            typer.secho(f"export refused: {err}", fg="red", err=True)
            raise typer.Exit(1) from None
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
    from medner.registry import describe, serving, versions
    from medner.triton import admin_key

    found = versions(repository)
    if not found:
        typer.secho(f"{repository}: no model versions (run `medner export`)", fg="red", err=True)
        raise typer.Exit(1)
    try:
        loaded = serving(url, admin_key(create=False)) if url else None
    except Exception as err:  # unreachable server: still list the repository
        typer.secho(f"warning: cannot read what {url} serves: {err}", fg="yellow", err=True)
        loaded = None
    for row in describe(found, loaded):
        if as_json:
            typer.echo(json.dumps(row))
            continue
        f1 = " ".join(f"{k[-4:]}={v:.4f}" for k, v in row.items() if k.startswith("entity_f1") and v is not None)
        gates = " ".join(f"{k}:{'pass' if v else 'FAIL'}" for k, v in row["gates"].items())
        typer.echo(f"v{row['version']:<4} {row['serving'] or '-':<12} {row['exported_at'] or '?':<21} {f1:<27} "
                   f"{gates:<33} {row['source'] or '?'} data={row['data_version'] or '?'} "
                   f"code={(row['code_version'] or '?')[:12]}")


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
) -> None:
    """Run Triton Inference Server on the repository until SIGINT/SIGTERM."""
    import signal
    import threading

    from medner.triton import TritonError, TritonServer, admin_key

    server = TritonServer(repository, host, grpc_port, http_port, metrics_port, gpu=gpu, log_file=log_file,
                          admin_key=admin_key(admin_key_file))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except TritonError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Triton ready: gRPC {server.grpc_url}, HTTP {host}:{http_port}, metrics {host}:{metrics_port}"
               f"{' (GPU configs)' if gpu else ''}; Ctrl-C stops it")
    while not stop.wait(1.0):
        if server.process is not None and server.process.poll() is not None:
            typer.secho(f"tritonserver exited with code {server.process.returncode}", fg="red", err=True)
            raise typer.Exit(1)
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
    inputs: Annotated[list[Path] | None, typer.Argument(help="Text files (a note per line), folders of .txt, or -.")
                      ] = None,
    url: Annotated[str, typer.Option(help="Triton gRPC address.")] = "127.0.0.1:8001",
    local: Annotated[Path | None, typer.Option(help="Run in-process on this model repository (no server).")] = None,
    model: Annotated[str, typer.Option(help="ner (fp32) or ner_int8.")] = "ner",
    output: Annotated[str, typer.Option("--format", help="jsonl or table.")] = "jsonl",
    concurrency: int = 16,
    timeout: Annotated[float, typer.Option(help="Seconds per request (each retry gets its own).")] = 60.0,
) -> None:
    """Extract diseases and treatments from notes, through Triton (--url) or in-process (--local)."""
    notes = _read_notes(inputs or [])
    texts = [note for _, note in notes]
    if local is not None:
        from clients.local import LocalNerModel

        results = LocalNerModel(local, model).extract(texts, return_exceptions=True)
    else:
        from clients.ner_client import NerClient

        with NerClient(url, model=model, timeout=timeout, concurrency=concurrency) as client:
            results = client.extract(texts, return_exceptions=True)
    failures = 0
    for (note_id, _), result in zip(notes, results):
        if isinstance(result, Exception):
            failures += 1
            typer.echo(json.dumps({"id": note_id, "error": str(result)}) if output == "jsonl"
                       else f"{note_id}\tERROR\t{result}")
        elif output == "jsonl":
            typer.echo(json.dumps({"id": note_id, "entities": result}, ensure_ascii=False))
        else:
            for e in result:
                typer.echo(f"{note_id}\t{e['label']}\t{e['start']}-{e['end']}\t{e['score']:.2f}\t{e['text']}")
    if failures:
        typer.secho(f"{failures} of {len(notes)} notes failed", fg="red", err=True)
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the medner version."""
    from medner import __version__

    typer.echo(__version__)


if __name__ == "__main__":
    app()
