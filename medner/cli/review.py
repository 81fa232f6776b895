"""``medner review``: import notes into the review queue, serve the review app, add reviewers, export reviews
as annotations, apply retention."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from medner.cli._app import GroupOption, Model, ModelOption, app, fail, group, open_database
from medner.config import DEFAULT_GRPC_URL, DEFAULT_RANDOM_SHARE

review_app = group("People check the model's least certain extractions; their corrections become training data.")
app.add_typer(review_app, name="review")

def _store(db: str | None) -> Any:
    """The review store at ``db``, or a clear error."""
    from review.store import Store

    return open_database(Store, db, "review")


DbOption = Annotated[str | None, typer.Option(
    "--db", help="Review database URL (default: $MEDNER_REVIEW_DB, else sqlite:///review.db); PostgreSQL: "
                 "postgresql://USER@HOST/DB.")]


@review_app.command("import")
def review_import(
    inputs: Annotated[list[Path], typer.Argument(help="Text files (a note per line) or folders of .txt notes.",
                                                 exists=True)],
    url: Annotated[str, typer.Option(help="Triton gRPC address of the serving model.")] = DEFAULT_GRPC_URL,
    local: Annotated[Path | None, typer.Option(help="Tag in-process with this repository's champion (no server).",
                                               exists=True, file_okay=False)] = None,
    model: ModelOption = Model.ner,
    model_version: Annotated[int | None, typer.Option(
        help="The serving model version, recorded with each extraction (default with --local: the champion).")] = None,
    random_share: Annotated[float, typer.Option(
        help="Share of notes drawn uniformly at random (the unbiased quality sample); the rest are queued least "
             "certain first.", min=0.0, max=1.0)] = DEFAULT_RANDOM_SHARE,
    group: GroupOption = None,
    db: DbOption = None,
) -> None:
    """Tag notes with the model and queue them for review (a note already in the queue is not added again)."""
    from review.importer import import_files

    try:
        result = import_files(inputs, _store(db), url=url, local=local, model=model, model_version=model_version,
                              random_share=random_share, group=group)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(json.dumps({"imported": result.imported, "duplicates": result.duplicates, "failed": result.failed},
                          indent=2))
    if result.failed:
        fail(f"{len(result.failed)} notes failed and were not queued (listed above)")


@review_app.command("add-reviewer")
def review_add_reviewer(name: Annotated[str, typer.Argument(help="The reviewer's name.")], db: DbOption = None
                        ) -> None:
    """Add a reviewer and print their sign-in token, once (only its hash is stored)."""
    from review.service import ReviewError, add_reviewer

    try:
        with _store(db).session() as session:
            token = add_reviewer(session, name)
    except ReviewError as err:
        fail(str(err))
    typer.echo(token)


@review_app.command("revoke-reviewer")
def review_revoke_reviewer(name: Annotated[str, typer.Argument(help="The reviewer's name.")], db: DbOption = None
                           ) -> None:
    """Revoke a reviewer: their token stops working and every session they hold ends at its next request."""
    from review.service import ReviewError, revoke_reviewer

    try:
        with _store(db).session() as session:
            revoke_reviewer(session, name)
    except ReviewError as err:
        fail(str(err))
    typer.echo(f"revoked {name.strip()}: their token and sessions no longer work")


@review_app.command("serve")
def review_serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the app on this machine.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one; the address is printed).")] = 8080,
    random_share: Annotated[float, typer.Option(help="Share of reviews drawn from the random sample.", min=0.0,
                                                max=1.0)] = DEFAULT_RANDOM_SHARE,
    secret_key_file: Annotated[Path | None, typer.Option(
        help="File holding the key that signs sessions (default: a random one: sessions end at restart).",
        exists=True, dir_okay=False)] = None,
    https_only: Annotated[bool | None, typer.Option(
        "--https-only/--no-https-only",
        help="Mark the session cookie Secure (sent over HTTPS only: a TLS proxy in front). Default: on unless --host "
             "is loopback.")] = None,
) -> None:
    """Serve the review web app (and its JSON API) until interrupted."""
    from review.app import serve

    secret = secret_key_file.read_text().strip() if secret_key_file else None
    serve(_store(db), host, port, secret, random_share,
          on_ready=lambda address: typer.echo(f"review app on {address}", err=True), https_only=https_only)


@review_app.command("export")
def review_export(
    out: Annotated[Path, typer.Option(help="Folder for the JSONL file: the monitoring inbox starts retraining.",
                                      file_okay=False)],
    since: Annotated[datetime | None, typer.Option(
        help="Notes reviewed since this UTC time (default: those not exported yet).")] = None,
    db: DbOption = None,
) -> None:
    """Write reviewed notes as annotation JSONL (the format `medner data check` reads)."""
    from review.service import export_reviews

    with _store(db).session() as session:
        path, notes = export_reviews(session, out, since)
    typer.echo(json.dumps({"file": str(path) if path else None, "notes": notes}))


@review_app.command("redact")
def review_redact(
    older_than_days: Annotated[float | None, typer.Option(
        help="Drop the text of notes exported this many days ago.", min=0.0)] = None,
    max_age_days: Annotated[float | None, typer.Option(
        help="Drop the text of every note imported this many days ago, exported or not.", min=0.0)] = None,
    db: DbOption = None,
) -> None:
    """Retention: remove the text of exported notes after N days and of every note after M days (spans and reviews
    stay). Give one of the two or both."""
    from review.service import redact_notes

    if older_than_days is None and max_age_days is None:
        raise typer.BadParameter("give --older-than-days, --max-age-days or both", param_hint="--max-age-days")
    with _store(db).session() as session:
        typer.echo(json.dumps({"redacted": redact_notes(session, exported_days=older_than_days,
                                                        max_age_days=max_age_days)}))
