"""``medner monitor check``, ``metrics`` and ``alarms``: drift of live requests against the served model's reference
profile, the latest drift and quality as Prometheus gauges, and CloudWatch alarms on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medner.cli._app import (
    DEFAULT_REPOSITORY,
    EXIT_CRITICAL,
    EXIT_WARNING,
    DecisionLogOption,
    EndpointOption,
    Model,
    RepositoryLocationOption,
    app,
    fail,
    group,
)
from medner.config import DEFAULT_DECISION_LOG
from monitoring.cloudwatch import DEFAULT_ALARM_PERIOD, DEFAULT_NAMESPACE, DEFAULT_TOPIC
from monitoring.metrics import DEFAULT_METRICS_PORT

monitor_app = group("Drift of live requests against the served model's reference profile.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("check")
def monitor_check(
    profile_dir: Annotated[str, typer.Option(help="Profile store root: a folder or s3://bucket/prefix.")],
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
        help="Estimated entity F1 drop below the reference's that makes a drifting window critical.")] = None,
    min_notes: Annotated[int | None, typer.Option(help="Fewer notes than this: level none.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write whylogs' HTML drift report here.")] = None,
) -> None:
    """Compare a window of request profiles with the reference profile; print the drift report as JSON.
    Exit 0 when the level is none, 3 on warning, 4 on critical, 1 when there is nothing to compare."""
    from monitoring.drift import DriftThresholds, check_window

    try:
        report, page = check_window(profile_dir, model, repository=repository, reference=reference, window=window,
                                    start=start, end=end, html=html is not None,
                                    thresholds=DriftThresholds.overridden(warning=warning, critical=critical,
                                                                          min_notes=min_notes, max_drop=max_drop))
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    typer.echo(json.dumps(report.to_dict(), indent=2))
    if html is not None:
        html.write_text(page)
        typer.echo(f"HTML drift report: {html}", err=True)
    if report.level != "none":  # cron and schedulers see the level without parsing the JSON
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
