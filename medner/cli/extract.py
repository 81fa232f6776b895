"""``medner extract``: notes in, entities out, through Triton or in-process."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from medner.cli._app import GroupOption, Model, ModelOption, app, fail
from medner.config import DEFAULT_GRPC_URL


class OutputFormat(StrEnum):
    jsonl = "jsonl"
    table = "table"


@app.command()
def extract(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Text files (a note per line), folders of .txt, or - (standard input, the default).", exists=True,
        allow_dash=True)] = None,
    url: Annotated[str, typer.Option(help="Triton gRPC address.")] = DEFAULT_GRPC_URL,
    local: Annotated[Path | None, typer.Option(help="Run in-process on this model repository (no server).",
                                               exists=True, file_okay=False)] = None,
    model: ModelOption = Model.ner,
    output: Annotated[OutputFormat, typer.Option("--format", help="One JSON object per note, or a table.")
                      ] = OutputFormat.jsonl,
    concurrency: int = 16,
    timeout: Annotated[float, typer.Option(help="Seconds per request (each retry gets its own).")] = 60.0,
    group: GroupOption = None,
) -> None:
    """Extract diseases and treatments from notes, through Triton (--url) or in-process (--local). Every note
    gets a line: its entities or its error. Exit 1 when any note failed (their ids are listed on stderr)."""
    from clients.notes import extract_notes, read_notes
    from medner.groups import GroupError, validate_group

    try:
        validate_group(group)
    except GroupError as err:
        raise typer.BadParameter(str(err), param_hint="--group") from None
    notes = read_notes(inputs or [])
    results = extract_notes([note for _, note in notes], url=url, local=local, model=model, timeout=timeout,
                            concurrency=concurrency, group=group)
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
