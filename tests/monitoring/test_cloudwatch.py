"""Drift and quality in CloudWatch against a real AWS endpoint (a moto server on 127.0.0.1): every decision `act`
records puts its numbers as metrics, and `medner monitor alarms` creates an alarm per level notifying an SNS topic.
(moto stores alarms but never evaluates them, so the change to ALARM is not observable here.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medner.cli import app
from monitoring.cloudwatch import NAMESPACE_ENV, metric_data
from monitoring.triggers import StepFunctionsBackend, act
from tests.aws import TEST_CREDENTIALS, aws, placeholder_state_machine


def test_metric_data_of_drift_and_quality_decisions() -> None:
    drift = {"level": "critical", "scores": {"oov_word_rate": 0.4, "combined": 0.3}}
    assert metric_data(drift) == [
        {"MetricName": "DriftLevel", "Value": 2}, {"MetricName": "DriftCombined", "Value": 0.3},
        {"MetricName": "DriftScore", "Dimensions": [{"Name": "Feature", "Value": "oov_word_rate"}], "Value": 0.4}]
    assert metric_data({"level": "none", "scores": {"entity_f1": 0.66}}) == [
        {"MetricName": "QualityLevel", "Value": 0}, {"MetricName": "QualityEntityF1", "Value": 0.66}]
    assert metric_data({"level": "none", "scores": {}}) == []  # an inbox decision: nothing to put


def test_decisions_put_metrics_and_alarms_notify_a_topic(moto_endpoint: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint, NAMESPACE_ENV: "medner"}.items():
        monkeypatch.setenv(name, value)
    placeholder_state_machine(moto_endpoint, "ExperimentFlow")
    created = CliRunner().invoke(app, ["monitor", "alarms"])
    assert created.exit_code == 0, created.output
    topic = json.loads(created.stdout)["topic"]
    assert topic in [t["TopicArn"] for t in aws(moto_endpoint, "sns").list_topics()["Topics"]]

    start = datetime.now(UTC)
    critical = {"level": "critical", "window_start": "20261201T110000Z", "window_end": "20261201T120000Z",
                "scores": {"oov_word_rate": 0.41, "sentence_length": 0.22}, "combined": 0.35}
    decision = act(critical, StepFunctionsBackend(endpoint_url=moto_endpoint), tmp_path / "decisions.jsonl")
    assert decision["status"] == "triggered"

    cloudwatch = aws(moto_endpoint, "cloudwatch")
    def maximum(metric: str, **dimensions: str) -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace="medner", MetricName=metric, StartTime=start - timedelta(minutes=5),
            EndTime=datetime.now(UTC) + timedelta(minutes=5), Period=60, Statistics=["Maximum"],
            Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()])["Datapoints"]
        return max(p["Maximum"] for p in points)
    assert maximum("DriftLevel") == 2.0 and maximum("DriftCombined") == 0.35
    assert maximum("DriftScore", Feature="oov_word_rate") == 0.41

    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {"medner-drift-warning", "medner-drift-critical", "medner-quality-drop"}
    critical_alarm = alarms["medner-drift-critical"]
    assert (critical_alarm["MetricName"], critical_alarm["Threshold"], critical_alarm["ComparisonOperator"]) == (
        "DriftLevel", 2.0, "GreaterThanOrEqualToThreshold")
    assert critical_alarm["AlarmActions"] == [topic] and critical_alarm["Namespace"] == "medner"
