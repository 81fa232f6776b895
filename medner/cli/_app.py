"""What every command shares: the app, the exit codes, the one error helper and the options used by more than
one command group."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from medner import config

# Exit codes, the same for every command (docs/serving.md, "Exit codes").
EXIT_FAILED = 1  # the command ran and its work failed or was refused (failed notes, refused export or promotion)
EXIT_USAGE = 2  # the command was called wrongly: unknown option, bad choice, missing file (click's own code)
EXIT_WARNING, EXIT_CRITICAL = 3, 4  # `monitor check`: drift at that level (0: none)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def open_database(store_class: type, db: str | None, what: str) -> Any:
    """``store_class(db)`` (a :class:`medner.database.Database`), or a clear error naming ``what`` (the URL itself
    is not echoed: it may hold a password)."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        return store_class(db)
    except (ArgumentError, OperationalError) as err:
        fail(f"cannot open the {what} database: {type(err).__name__}: {str(err).splitlines()[0]}")


def group(help: str) -> typer.Typer:  # noqa: A002 - typer's own name
    """A command group: plain click errors (one greppable line), its help when called bare."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


Model = StrEnum("Model", [(name, name) for name in config.SERVED_MODELS])  # a served model: fp32 or INT8


def json_option(text: str, name: str) -> dict:
    """A JSON object given on the command line (flow parameters); a usage error otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(f"not JSON ({err.msg})", param_hint=name) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("expected a JSON object of flow parameters", param_hint=name)
    return value


def _print_version(value: bool) -> None:
    if value:
        from medner import __version__

        typer.echo(f"medner {__version__}")
        raise typer.Exit()


app = typer.Typer(help="medner: disease and treatment extraction from clinical notes. Exit codes: 0 success, "
                  "1 the work failed or was refused, 2 usage error, 3/4 drift warning/critical (monitor check).",
                  no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """medner: disease and treatment extraction from clinical notes."""


DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="BeHealthy folder (default: $MEDNER_DATA_DIR, else the cache).")]
RepositoryOption = Annotated[Path, typer.Option(envvar=config.REPOSITORY_ENV, help="Triton model repository.")]
RepositoryLocationOption = Annotated[str, typer.Option(
    envvar=config.REPOSITORY_ENV, help="Triton model repository: a folder, or s3://BUCKET/PREFIX (endpoint and "
                                     "credentials from the AWS_* environment).")]
ModelOption = Annotated[Model, typer.Option(help="Served model: fp32 or INT8.")]
GroupOption = Annotated[str | None, typer.Option(
    help="The notes' group (a clinic, a specialty: 1-32 letters, digits, . _ -): live profiles and quality by "
         "group.")]
AdminKeyFileOption = Annotated[Path | None, typer.Option(
    help="File holding the admin key (default: $MEDNER_ADMIN_KEY, else ~/.cache/medner/admin-key).")]
GpuOption = Annotated[bool | None, typer.Option(
    "--gpu/--cpu", help="Load --url's server with the GPU or the CPU configurations (default: those it runs).")]
BackendOption = Annotated[str, typer.Option(help="Where flows start: local (Metaflow Runner) or stepfunctions.")]
DecisionLogOption = Annotated[str, typer.Option(
    "--log", envvar=config.DECISION_LOG_ENV,
    help="Decision log: a JSONL file or s3://bucket/prefix (an object per record).")]
BranchOption = Annotated[str, typer.Option(
    help="@project branch of the flow runs read or started: prod (--production runs and deployments), user (your own "
         "runs), user.NAME, test.NAME or prod.NAME.")]
EndpointOption = Annotated[str | None, typer.Option(help="AWS endpoint URL for stepfunctions (default: boto3's).")]
DEFAULT_REPOSITORY = Path(config.DEFAULT_REPOSITORY)
