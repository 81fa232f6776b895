"""``medner data``: get, check and describe annotated data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medner.cli._app import DataDirOption, app, fail, group

data_app = group("Get, check and describe annotated data.")
app.add_typer(data_app, name="data")


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
    from medner.data import DataFormatError
    from medner.prepare import check_data

    try:
        stats = check_data(paths or [], data_dir)
    except (DataFormatError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(json.dumps(stats, indent=2))
