"""The ``medner`` command line: the home of every operational subcommand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="medner: disease and treatment extraction from clinical notes.", no_args_is_help=True)
data_app = typer.Typer(help="Get, check and describe annotated data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

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


@app.command("export")
def export_command(
    run: Annotated[str, typer.Option(help="TrainFlow run pathspec (default: latest successful).")] = "",
    model_dir: Annotated[Path | None, typer.Option(help="Export this model folder instead of a run.")] = None,
    repository: Annotated[Path, typer.Option(envvar="MEDNER_REPOSITORY", help="Triton model repository.")] = Path(
        "model_repository"),
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
            folder = export_model(model_dir, repository / "ner_encoder", test, lineage, method, threads)
        except ExportRefused as err:
            typer.secho(f"export refused: {err}", fg="red", err=True)
            raise typer.Exit(1) from None
    record = json.loads((folder / "lineage.json").read_text())
    typer.echo(json.dumps({"version_dir": str(folder), "gates": record["gates"],
                           "entity_f1_fp32": record["metrics_fp32"]["entity_f1"],
                           "entity_f1_int8": record["metrics_int8"]["entity_f1"]}, indent=2))


@app.command()
def version() -> None:
    """Print the medner version."""
    from medner import __version__

    typer.echo(__version__)


if __name__ == "__main__":
    app()
