"""``medner models``: the registry (versions in a Triton repository), promotion and rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medner.cli._app import (
    DEFAULT_REPOSITORY,
    EXIT_USAGE,
    AdminKeyFileOption,
    GpuOption,
    RepositoryLocationOption,
    app,
    fail,
    group,
)
from medner.config import (
    ACCEPTANCE_FILE,
    DEFAULT_PROMOTION_MARGIN,
    DEFAULT_PROMOTION_TOLERANCE,
    DEFAULT_UAT_MIN_F1,
)

models_app = group("The model registry: versions in a Triton repository and what is serving.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
    url: Annotated[str | None, typer.Option(help="Triton gRPC address: mark the versions it has loaded.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per version.")] = False,
) -> None:
    """Versions of the served models, newest first: metrics, gates, provenance, and which is serving."""
    from medner.registry import version_rows
    from medner.s3 import S3Unavailable

    try:
        rows, warning = version_rows(repository, url)
    except (FileNotFoundError, S3Unavailable) as err:
        fail(str(err))
    if warning:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
            continue
        f1 = " ".join(f"{k[-4:]}={v:.4f}" for k, v in row.items() if k.startswith("entity_f1") and v is not None)
        gates = " ".join(f"{k}:{'pass' if v else 'FAIL'}" for k, v in row["gates"].items())
        typer.echo(f"v{row['version']:<4} {row['serving'] or '-':<12} {row['exported_at'] or '?':<21} {f1:<27} "
                   f"{gates:<33} {row['source'] or '?'} data={row['data_version'] or '?'} "
                   f"code={(row['code_version'] or '?')[:12]}")


SwitchUrlOption = Annotated[str | None, typer.Option(
    help="gRPC address of a `medner serve` to switch at once (default: none; servers following the registry "
         "converge by themselves).")]


def _admin_key_or_exit(key_file: Path | None) -> str:
    from medner.triton_control import admin_key

    key = admin_key(key_file, create=False)
    if not key:
        fail("no admin key: set $MEDNER_ADMIN_KEY or pass --admin-key-file (the key `medner serve` was started "
             "with)", EXIT_USAGE)
    return key


@models_app.command("promote")
def models_promote(
    version: Annotated[int | None, typer.Argument(help="Challenger version (default: the newest).")] = None,
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
    url: SwitchUrlOption = None,
    margin: Annotated[float, typer.Option(help="Test entity F1 (0-1) the challenger must gain.")
                      ] = DEFAULT_PROMOTION_MARGIN,
    tolerance: Annotated[float, typer.Option(help="F1 difference counted as a tie, settled by speed.")
                         ] = DEFAULT_PROMOTION_TOLERANCE,
    keep_refused: Annotated[bool, typer.Option(help="Keep a refused version's folders.")] = False,
    uat_min_f1: Annotated[float, typer.Option(help="Entity F1 (0-1) needed on the acceptance notes.")
                          ] = DEFAULT_UAT_MIN_F1,
    acceptance: Annotated[Path, typer.Option(help="Acceptance notes (JSONL: text and the expected entities).",
                                             exists=True, dir_okay=False)] = ACCEPTANCE_FILE,
    gpu: GpuOption = None,
    admin_key_file: AdminKeyFileOption = None,
) -> None:
    """Gate a challenger against the recorded champion (export gates, test F1, acceptance notes, smoke test on a
    throwaway Triton) and, if it passes, record it as the champion: every `medner serve` following the registry
    switches to it with no downtime (--url's server at once). The first champion of a repository is promoted
    this way too. The old champion stays for `medner models rollback`. Exit 1 if refused."""
    from medner.promotion import PromotionError, promote
    from medner.s3 import S3Unavailable, ServingConflict
    from medner.triton_control import VersionLoadError

    try:
        decision = promote(repository, url, _admin_key_or_exit(admin_key_file) if url else None, version=version,
                           margin=margin, tolerance=tolerance, gpu=gpu, keep_refused=keep_refused,
                           uat_min_f1=uat_min_f1, acceptance=acceptance)
    except PromotionError as err:
        fail(str(err), EXIT_USAGE)
    except (ServingConflict, S3Unavailable, VersionLoadError) as err:
        fail(str(err))
    for gate in decision.gates:
        typer.echo(f"  {gate.name:<8} {'pass' if gate.passed else 'FAIL'}  {gate.detail}")
    for note in decision.notes:
        typer.echo(f"  {note}")
    if not decision.promoted:
        fail(f"refused v{decision.version}; " + (f"v{decision.champion} keeps serving" if decision.champion is not None
                                                 else "no champion is recorded"))
    was = f"was v{decision.champion}" if decision.champion is not None else "the first champion"
    typer.secho(f"promoted v{decision.version} ({was}){_where(url)}; `medner models rollback` undoes it", fg="green")


def _where(url: str | None) -> str:
    return f": {url} serves it, the other servers within their poll" if url else (
        ": recorded; servers following the registry serve it within their poll")


@models_app.command("rollback")
def models_rollback(
    to: Annotated[int | None, typer.Option(help="Version to serve (default: the one the champion replaced).")] = None,
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
    url: SwitchUrlOption = None,
    gpu: GpuOption = None,
    admin_key_file: AdminKeyFileOption = None,
) -> None:
    """Record the previous champion (or --to) as the champion again: servers switch back with no downtime."""
    from medner.promotion import PromotionError, rollback
    from medner.s3 import S3Unavailable, ServingConflict
    from medner.triton_control import VersionLoadError

    try:
        entry = rollback(repository, url, _admin_key_or_exit(admin_key_file) if url else None, to=to, gpu=gpu)
    except PromotionError as err:
        fail(str(err), EXIT_USAGE)
    except (ServingConflict, S3Unavailable, VersionLoadError) as err:
        fail(str(err))
    typer.secho(f"rolled back to v{entry['version']} (was v{entry['champion']}){_where(url)}; {entry['notes'][0]}",
                fg="green")
