"""``medner kb``: the disease -> treatment knowledge base of a records store (filled by ExtractFlow)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from medner.cli._app import app, fail, group, open_database

kb_app = group("A disease -> treatment knowledge base from the records ExtractFlow wrote.")
app.add_typer(kb_app, name="kb")

DbOption = Annotated[str | None, typer.Option(
    "--db", help="Records database URL (default: $MEDNER_RECORDS_DB, else sqlite:///records.db); PostgreSQL: "
                 "postgresql://USER@HOST/DB.")]


class KbFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"


def _store(db: str | None) -> Any:
    from records.store import RecordsStore

    return open_database(RecordsStore, db, "records")


@kb_app.command("build")
def kb_build(db: DbOption = None) -> None:
    """Rebuild the knowledge base from every note's newest extraction: D and T named in one sentence."""
    from records.kb import build

    counts = build(_store(db))
    typer.echo(f"{counts['pairs']} disease-treatment pairs from {counts['mentions']} mentions in "
               f"{counts['notes']} notes")


@kb_app.command("query")
def kb_query(
    disease: Annotated[str, typer.Argument(help="A disease name (matched normalised) or a MeSH id (D016161).")],
    top: Annotated[int, typer.Option(min=1, help="Treatments shown.")] = 10,
    output: Annotated[KbFormat, typer.Option("--format", help="A table, or one JSON object per treatment.")
                      ] = KbFormat.table,
    db: DbOption = None,
) -> None:
    """What treats DISEASE? Treatments named with it in the records, most notes first. Exit 1: none found."""
    from records.kb import query

    answers = query(_store(db), disease, top)
    if not answers:
        fail(f"no treatment of {disease!r} in the knowledge base (run `medner kb build` after ExtractFlow)")
    if output is KbFormat.jsonl:
        for answer in answers:
            typer.echo(json.dumps(answer.as_dict(), ensure_ascii=False))
        return
    typer.echo(f"{'treatment':<40} {'id':<10} {'notes':>6} {'mentions':>8} {'conf':>5}  diseases")
    for a in answers:
        typer.echo(f"{a.treatment[:40]:<40} {a.treatment_id or '-':<10} {a.notes:>6} {a.mentions:>8} "
                   f"{a.mean_confidence:>5.2f}  {'; '.join(a.diseases)}")


@kb_app.command("export")
def kb_export(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.", dir_okay=False)],
    db: DbOption = None,
) -> None:
    """Every pair of the knowledge base as CSV."""
    from records.kb import export_csv

    typer.echo(f"{export_csv(_store(db), out)} pairs written to {out}")
