"""Drift and quality in CloudWatch against real AWS endpoints on 127.0.0.1: every decision `act` records puts its
numbers as metrics, `medner monitor alarms` creates an alarm per level notifying an SNS topic, and a critical
decision sets off the drift alarms, whose notifications reach a queue subscribed to the topic. CloudWatch and SNS
run on LocalStack (moto stores alarms but never evaluates them), the state machine on moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medner.cli import app
from monitoring.cloudwatch import NAMESPACE_ENV, metric_data, publish
from monitoring.policy import record
from monitoring.triggers import StepFunctionsBackend, act
from tests.aws import TEST_CREDENTIALS, aws, localstack_server, placeholder_state_machine


def test_metric_data_of_drift_and_quality_decisions() -> None:
    drift = {"level": "critical", "scores": {"oov_word_rate": 0.4, "combined": 0.3}}
    assert metric_data(drift) == [
        {"MetricName": "DriftLevel", "Value": 2}, {"MetricName": "DriftCombined", "Value": 0.3},
        {"MetricName": "DriftScore", "Dimensions": [{"Name": "Feature", "Value": "oov_word_rate"}], "Value": 0.4}]
    estimated = {"level": "warning", "scores": {"oov_word_rate": 0.4, "combined": 0.3, "estimated_entity_f1": 0.6},
                 "mean_shifts": {"oov_word_rate": 1.2}}
    assert metric_data(estimated)[1:] == [
        {"MetricName": "DriftCombined", "Value": 0.3},
        {"MetricName": "DriftScore", "Dimensions": [{"Name": "Feature", "Value": "oov_word_rate"}], "Value": 0.4},
        {"MetricName": "DriftMeanShift", "Dimensions": [{"Name": "Feature", "Value": "oov_word_rate"}], "Value": 1.2},
        {"MetricName": "EstimatedEntityF1", "Value": 0.6}]
    assert metric_data({"level": "none", "scores": {"entity_f1": 0.66}}) == [
        {"MetricName": "QualityLevel", "Value": 0}, {"MetricName": "QualityEntityF1", "Value": 0.66}]
    assert metric_data({"level": "none", "scores": {}}) == []  # an inbox decision: nothing to put


def test_a_critical_decision_sets_off_its_alarms_which_notify_the_topic(moto_endpoint: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """CloudWatch and SNS on LocalStack (which evaluates alarms), Step Functions on moto, each service's endpoint
    from its own ``AWS_ENDPOINT_URL_<SERVICE>`` as in a mixed deployment."""
    with localstack_server("cloudwatch,sns,sqs", tmp_path / "localstack") as localstack:
        for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL_CLOUDWATCH": localstack,
                            "AWS_ENDPOINT_URL_SNS": localstack, NAMESPACE_ENV: "medner"}.items():
            monkeypatch.setenv(name, value)
        created = CliRunner().invoke(app, ["monitor", "alarms", "--period", "10"])  # CloudWatch's shortest
        assert created.exit_code == 0, created.output
        topic = json.loads(created.stdout)["topic"]
        inbox = subscribed_queue(localstack, topic)
        cloudwatch = aws(localstack, "cloudwatch")
        alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
        assert set(alarms) == {"medner-drift-warning", "medner-drift-critical", "medner-quality-drop"}
        assert (alarms["medner-drift-critical"]["MetricName"], alarms["medner-drift-critical"]["Threshold"]) == (
            "DriftLevel", 2.0)

        placeholder_state_machine(moto_endpoint, "ExperimentFlow")
        critical = {"level": "critical", "window_start": "20261201T110000Z", "window_end": "20261201T120000Z",
                    "scores": {"oov_word_rate": 0.41, "sentence_length": 0.22}, "combined": 0.35,
                    "estimate": {"entity_f1": 0.58, "precision": 0.6, "recall": 0.56, "entities": 900,
                                 "reference_f1": 0.7, "drop": 0.12}}
        decision = act(critical, StepFunctionsBackend(endpoint_url=moto_endpoint), tmp_path / "decisions.jsonl")
        assert decision["status"] == "triggered"
        start = datetime.now(UTC) - timedelta(minutes=5)
        points = cloudwatch.get_metric_statistics(
            Namespace="medner", MetricName="DriftScore", Dimensions=[{"Name": "Feature", "Value": "oov_word_rate"}],
            StartTime=start, EndTime=start + timedelta(minutes=10), Period=60, Statistics=["Maximum"])["Datapoints"]
        assert [p["Maximum"] for p in points] == [0.41]
        estimated = cloudwatch.get_metric_statistics(
            Namespace="medner", MetricName="EstimatedEntityF1", StartTime=start, EndTime=start + timedelta(minutes=10),
            Period=60, Statistics=["Maximum"])["Datapoints"]
        assert [p["Maximum"] for p in estimated] == [0.58]  # the window's F1 estimated without labels
        publish(record("warning", "none", "-", "groups", status="observed", kind="groups", groups={
            "clinic_a": {"level": "none", "verdict": "in line", "notes": 150, "combined_vs_rest": 0.1},
            "clinic_d": {"level": "warning", "verdict": "diverging", "notes": 150, "combined_vs_rest": 0.5}}),
                "medner")
        by_group = {group: cloudwatch.get_metric_statistics(
            Namespace="medner", MetricName="GroupLevel", Dimensions=[{"Name": "Group", "Value": group}],
            StartTime=start, EndTime=start + timedelta(minutes=10), Period=60, Statistics=["Maximum"])["Datapoints"]
            for group in ("clinic_a", "clinic_d")}
        assert {g: [p["Maximum"] for p in points] for g, points in by_group.items()} == {
            "clinic_a": [0.0], "clinic_d": [1.0]}  # one metric, a dimension per group

        alarmed = set()  # the notifications are the event: each alarm's first evaluation after the decision
        while not {"medner-drift-warning", "medner-drift-critical"} <= alarmed:
            for message in inbox():  # long polls; a notification that never comes fails by the suite's timeout
                if message["NewStateValue"] == "ALARM":
                    alarmed.add(message["AlarmName"])
                    assert message["Trigger"]["MetricName"] == "DriftLevel" and message["NewStateReason"]
        assert "medner-quality-drop" not in alarmed  # no quality decision: its metric has no data (not breaching)
        history = cloudwatch.describe_alarm_history(AlarmName="medner-drift-critical", HistoryItemType="StateUpdate")
        assert any(json.loads(item["HistoryData"])["newState"]["stateValue"] == "ALARM"
                   for item in history["AlarmHistoryItems"])


def subscribed_queue(endpoint: str, topic: str) -> Callable[[], list[dict]]:
    """An SQS queue subscribed to ``topic``; returns a function that long-polls it for alarm notifications."""
    sqs = aws(endpoint, "sqs")
    queue = sqs.create_queue(QueueName="medner-alerts-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws(endpoint, "sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def receive() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(json.loads(message["Body"])["Message"]) for message in messages]
    return receive
