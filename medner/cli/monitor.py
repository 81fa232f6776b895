"""``medner monitor``: ``check`` (drift of live requests against the served model's reference profile), ``metrics``
and ``alarms`` (the latest drift and quality as Prometheus gauges and CloudWatch alarms), and the commands that start
flows: ``act`` (from a drift report), ``inbox`` (from new annotated files) and ``quality`` (from a quality drop on
annotated live samples)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medner import config
from medner.cli._app import (
    DEFAULT_REPOSITORY,
    EXIT_CRITICAL,
    EXIT_USAGE,
    EXIT_WARNING,
    BackendOption,
    BranchOption,
    DecisionLogOption,
    EndpointOption,
    Model,
    RepositoryLocationOption,
    RepositoryOption,
    app,
    fail,
    group,
    json_option,
)
from medner.config import DEFAULT_DECISION_LOG, PRODUCTION_BRANCH
from monitoring.cloudwatch import DEFAULT_ALARM_PERIOD, DEFAULT_NAMESPACE, DEFAULT_TOPIC
from monitoring.metrics import DEFAULT_METRICS_PORT
from monitoring.policy import DEFAULT_QUALITY_DROP
from monitoring.quality import MIN_SENTENCES

monitor_app = group("Drift of live requests against the served model's reference profile.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("check")
def monitor_check(
    profile_dir: Annotated[str, typer.Option(envvar=config.PROFILE_DIR_ENV,
                                             help="Profile store root: a folder or s3://bucket/prefix.")],
    model: Annotated[Model, typer.Option(help="Served model whose profiles to check.")] = Model.ner,
    repository: RepositoryLocationOption = str(DEFAULT_REPOSITORY),
    reference: Annotated[str | None, typer.Option(
        help="Reference profile (default: reference_profile.bin of the champion version).")] = None,
    window: Annotated[str, typer.Option(help="Window length ending now (or at --end): 30m, 1h, 1d.")] = "1h",
    start: Annotated[str | None, typer.Option(help="Window start, ISO 8601 (UTC unless an offset is given).")] = None,
    end: Annotated[str | None, typer.Option(help="Window end, ISO 8601 (default: now).")] = None,
    warning: Annotated[float | None, typer.Option(
        help="A fixed warning bound on the combined score (default: the noise for the window's size).")] = None,
    critical: Annotated[float | None, typer.Option(
        help="A fixed critical bound on the combined score (default: none, critical is an accuracy drop).")] = None,
    max_drop: Annotated[float | None, typer.Option(
        help="Entity F1 drop below the reference's that makes a drifting window critical, less the estimate's own "
             "error (DriftThresholds.estimate_error); reports carry the result as critical_drop.")] = None,
    min_notes: Annotated[int | None, typer.Option(help="Fewer notes than this: level none.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write whylogs' HTML drift report here.")] = None,
    by_group: Annotated[bool, typer.Option(
        "--by-group", help="Check each group of notes against the other groups of the window (bias), not the "
                           "window against the reference.")] = False,
    output: Annotated[str, typer.Option("--format", help="--by-group: a table, or the report as JSON.")] = "table",
    review_db: Annotated[str | None, typer.Option(
        help="--by-group: also each group's entity F1 from this review database (random share).")] = None,
) -> None:
    """Compare a window of request profiles with the reference profile; print the drift report as JSON. With
    --by-group, each group's verdict against the rest of the window. Exit 0 when the level is none, 3 on warning,
    4 on critical, 1 when there is nothing to compare."""
    from monitoring.drift import DriftThresholds
    from monitoring.service import check_window

    thresholds = DriftThresholds.overridden(warning=warning, critical=critical, min_notes=min_notes,
                                            max_drop=max_drop)
    if by_group:
        _check_groups(profile_dir, model, repository, reference, window, start, end, thresholds, output, review_db)
        return
    try:
        report, page = check_window(profile_dir, model, repository=repository, reference=reference, window=window,
                                    start=start, end=end, html=html is not None, thresholds=thresholds)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(json.dumps(report.to_dict(), indent=2))
    if html is not None:
        html.write_text(page)
        typer.echo(f"HTML drift report: {html}", err=True)
    if report.level != "none":  # cron and schedulers see the level without parsing the JSON
        raise typer.Exit(EXIT_WARNING if report.level == "warning" else EXIT_CRITICAL)


def _check_groups(profile_dir: str, model: str, repository: str, reference: str | None, window: str,
                  start: str | None, end: str | None, thresholds: object, output: str, review_db: str | None) -> None:
    from monitoring.bias import check_groups, groups_table

    if output not in ("table", "json"):
        raise typer.BadParameter("table or json", param_hint="--format")
    try:
        report = check_groups(profile_dir, model, repository=repository, reference=reference or "", window=window,
                              start=start, end=end, thresholds=thresholds, review_db=review_db)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(json.dumps(report.to_dict(), indent=2) if output == "json" else "\n".join(groups_table(report)))
    if report.level != "none":
        raise typer.Exit(EXIT_WARNING if report.level == "warning" else EXIT_CRITICAL)


@monitor_app.command("metrics")
def monitor_metrics(
    log: DecisionLogOption = DEFAULT_DECISION_LOG,
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of GET /metrics.")] = DEFAULT_METRICS_PORT,
) -> None:
    """Serve the latest drift and quality from the decision log as Prometheus gauges (GET /metrics) until
    SIGINT/SIGTERM; the alert rules and the Grafana dashboard are in deploy/."""
    import signal

    from monitoring.metrics import metrics_server

    try:
        server = metrics_server(log, host, port)
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror}")
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    typer.echo(f"metrics on http://{host}:{server.server_port}/metrics (from {log}); Ctrl-C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@monitor_app.command("alarms")
def monitor_alarms(
    namespace: Annotated[str, typer.Option(help="CloudWatch namespace of medner's metrics.")] = DEFAULT_NAMESPACE,
    topic: Annotated[str, typer.Option(help="SNS topic the alarms notify (created if missing).")] = DEFAULT_TOPIC,
    period: Annotated[int, typer.Option(help="Seconds per alarm evaluation (10, 30 or a multiple of 60).", min=10)
                      ] = DEFAULT_ALARM_PERIOD,
    endpoint_url: EndpointOption = None,
) -> None:
    """Create or update the SNS topic and the CloudWatch alarms on medner's metrics (drift warning, critical drift,
    quality drop); print their names. Decisions put the metrics when $MEDNER_CLOUDWATCH_NAMESPACE is set."""
    from botocore.exceptions import BotoCoreError, ClientError

    from monitoring.cloudwatch import ensure_alarms

    try:
        topic_arn, alarms = ensure_alarms(namespace, topic, endpoint_url, period)
    except (BotoCoreError, ClientError) as err:
        fail(f"cannot create the alarms: {err}")
    typer.echo(json.dumps({"topic": topic_arn, "alarms": alarms, "namespace": namespace}, indent=2))


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
