"""``medner monitor act``, ``inbox`` and ``quality``: start flows from a drift report, from new annotated files,
or from a quality drop on annotated live samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medner.cli._app import (
    DEFAULT_REPOSITORY,
    EXIT_USAGE,
    BackendOption,
    BranchOption,
    DecisionLogOption,
    EndpointOption,
    Model,
    RepositoryLocationOption,
    RepositoryOption,
    fail,
    json_option,
)
from medner.cli.monitor import monitor_app
from medner.config import DEFAULT_DECISION_LOG, PRODUCTION_BRANCH
from monitoring.policy import DEFAULT_QUALITY_DROP
from monitoring.quality import MIN_SENTENCES


@monitor_app.command("act")
def monitor_act(
    report: Annotated[Path, typer.Argument(help="Drift report JSON (the output of `medner monitor check`); - reads "
                                           "stdin.", exists=True, dir_okay=False, allow_dash=True)],
    backend: BackendOption = "local",
    log: DecisionLogOption = DEFAULT_DECISION_LOG,
    train_params: Annotated[str, typer.Option(help="TrainFlow parameters for a retrain, JSON.")] = "{}",
    experiment_params: Annotated[str, typer.Option(help="ExperimentFlow parameters, JSON.")] = "{}",
    cooldown_hours: Annotated[float, typer.Option(help="No new run for the same episode within this.")] = 24.0,
    endpoint_url: EndpointOption = None,
    branch: BranchOption = PRODUCTION_BRANCH,
    promote_url: Annotated[str, typer.Option(help="gRPC address of `medner serve`: the started flow exports its model "
                                             "to --repository and promotes it there (default: it only trains).")] = "",
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
) -> None:
    """Act on a drift report: warning -> TrainFlow, critical -> ExperimentFlow + alert; print the decision."""
    from datetime import timedelta

    from monitoring.triggers import TriggerError, act, backend_options, closing_the_loop, read_report

    try:
        data = read_report(report)
    except ValueError as err:
        fail(str(err), EXIT_USAGE)
    parameters = closing_the_loop({"TrainFlow": json_option(train_params, "--train-params"),
                                   "ExperimentFlow": json_option(experiment_params, "--experiment-params")},
                                  repository, promote_url)
    try:
        decision = act(data, backend, log, parameters=parameters, cooldown=timedelta(hours=cooldown_hours),
                       backend_options=backend_options(backend, endpoint_url, branch))
    except (TriggerError, ValueError) as err:
        fail(str(err))
    typer.echo(json.dumps(decision, indent=2))


@monitor_app.command("inbox")
def monitor_inbox(
    inbox: Annotated[Path, typer.Option(help="Folder where new annotated files (*.jsonl, *_sent/*_label) arrive.")],
    backend: BackendOption = "local",
    log: DecisionLogOption = DEFAULT_DECISION_LOG,
    accepted: Annotated[Path | None, typer.Option(help="Where valid files go (default: INBOX/accepted).")] = None,
    data_params: Annotated[str, typer.Option(help="Extra DataFlow parameters, JSON.")] = "{}",
    train_params: Annotated[str, typer.Option(help="TrainFlow parameters (local backend), JSON.")] = "{}",
    endpoint_url: EndpointOption = None,
    branch: BranchOption = PRODUCTION_BRANCH,
) -> None:
    """Validate new files in the inbox; valid ones run DataFlow -> TrainFlow, malformed ones are rejected (exit 2)."""
    from monitoring.inbox import process_inbox
    from monitoring.triggers import TriggerError, backend_options

    try:
        result = process_inbox(inbox, backend, log, accepted_dir=accepted,
                               data_parameters=json_option(data_params, "--data-params"),
                               train_parameters=json_option(train_params, "--train-params"),
                               backend_options=backend_options(backend, endpoint_url, branch))
    except (TriggerError, FileNotFoundError) as err:
        fail(str(err))
    for name, error in result.rejected.items():
        typer.secho(f"rejected {name}: {error}", fg="red", err=True)
    typer.echo(json.dumps({"accepted": result.accepted, "rejected": result.rejected,
                           "runs": [d["target"] for d in result.decisions if d.get("target")]}, indent=2))
    if result.rejected:
        raise typer.Exit(EXIT_USAGE)  # something needs a person's attention: say so to cron / the scheduler


@monitor_app.command("quality")
def monitor_quality(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Annotated samples of live traffic: *.jsonl or *_sent files (or --reviews).")] = None,
    repository: RepositoryOption = DEFAULT_REPOSITORY,
    url: Annotated[str | None, typer.Option(help="Score a live server (gRPC) instead of the champion version "
                                            "in-process.")] = None,
    model: Annotated[Model, typer.Option(help="Served model to score.")] = Model.ner,
    max_drop: Annotated[float, typer.Option(help="Entity F1 drop below the champion treated as critical.")
                        ] = DEFAULT_QUALITY_DROP,
    min_sentences: Annotated[int, typer.Option(help="Fewer annotated sentences (or reviewed notes) than this: no "
                                               "verdict.")] = MIN_SENTENCES,
    trigger: Annotated[bool, typer.Option(help="Act on a drop (ExperimentFlow + alert) and record it.")] = False,
    backend: BackendOption = "local",
    log: DecisionLogOption = DEFAULT_DECISION_LOG,
    experiment_params: Annotated[str, typer.Option(help="ExperimentFlow parameters, JSON.")] = "{}",
    endpoint_url: EndpointOption = None,
    reviews: Annotated[str | None, typer.Option(
        help="Measure against the review database at this URL instead (the random share of reviewed notes).")
    ] = None,
    branch: BranchOption = PRODUCTION_BRANCH,
) -> None:
    """Entity F1 of the served model on annotated live samples, or from reviews, against the champion's test
    F1; print JSON."""
    from medner.data import DataFormatError
    from monitoring.quality import check_quality_and_act
    from monitoring.triggers import TriggerError

    parameters = {"ExperimentFlow": json_option(experiment_params, "--experiment-params")} if trigger else {}
    try:
        report = check_quality_and_act(files or [], repository=repository, url=url, model=model,
                                       max_drop=max_drop, min_sentences=min_sentences, trigger=trigger,
                                       backend=backend, log=log, parameters=parameters, endpoint_url=endpoint_url,
                                       reviews=reviews, branch=branch)
    except (DataFormatError, FileNotFoundError, ValueError, TriggerError) as err:
        fail(str(err))
    typer.echo(json.dumps(report, indent=2))
