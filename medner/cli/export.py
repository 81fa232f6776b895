"""``medner export``: a trained model to ONNX (fp32 + INT8) as a new gated version of the model repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medner.cli._app import DEFAULT_REPOSITORY, BranchOption, DataDirOption, RepositoryLocationOption, app, fail
from medner.config import PRODUCTION_BRANCH


@app.command("export")
def export_command(
    run: Annotated[str, typer.Option(help="TrainFlow run, or ExperimentFlow run (its challenger), as a pathspec "
                                          "(default: the latest successful TrainFlow run on --branch); several "
                                          "separated by commas: their seed ensemble as one model.")] = "",
    branch: BranchOption = PRODUCTION_BRANCH,
    model_dir: Annotated[Path | None, typer.Option(help="Export this model folder instead of a run.")] = None,
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
    data_dir: DataDirOption = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads for the gates.")] = 1,
) -> None:
    """Export a trained model to ONNX (fp32 + INT8) as a new version in the model repository."""
    from export.onnx_export import ExportRefused
    from medner.s3 import S3Unavailable, VersionConflict
    from medner.steps import export_run_or_folder

    try:
        version, record = export_run_or_folder(run=run, branch=branch, model_dir=model_dir, repository=repository,
                                               data_dir=data_dir, threads=threads)
    except (ValueError, S3Unavailable, VersionConflict) as err:
        fail(str(err))
    except ExportRefused as err:
        fail(f"export refused: {err}")
    typer.echo(json.dumps({"repository": repository, "version": version, "gates": record["gates"],
                           "entity_f1_fp32": record["metrics_fp32"]["entity_f1"],
                           "entity_f1_int8": record["metrics_int8"]["entity_f1"]}, indent=2))
