"""Drift and quality in CloudWatch, where operators on AWS look: every decision's numbers as metrics
(``put_metric_data``), an alarm per level on them, and an SNS topic the alarms notify.

Metrics (namespace ``medner`` unless told another; numbers only, never note text):

* ``DriftLevel`` (0 none, 1 warning, 2 critical), ``DriftCombined``, ``DriftScore`` and ``DriftMeanShift`` per
  ``Feature`` and ``EstimatedEntityF1`` (the served model's F1 estimated from its confidences): each drift decision;
* ``QualityLevel`` and ``QualityEntityF1``: each quality decision (annotated samples or reviews);
* ``GroupLevel``, ``GroupDriftCombined`` (dimension ``Against``: rest or reference), ``GroupEstimatedEntityF1`` and
  ``GroupReviewedEntityF1``, each with the dimension ``Group``: each group check (:mod:`monitoring.bias`).

``monitoring.triggers.act`` publishes them for every decision when ``$MEDNER_CLOUDWATCH_NAMESPACE`` is set (MonitorFlow
and ``medner monitor`` in the cloud); ``medner monitor alarms`` creates the topic and the alarms once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitoring.metrics import NOT_FEATURES
from monitoring.policy import LEVELS, NO_VERDICT, parse_time

NAMESPACE_ENV = "MEDNER_CLOUDWATCH_NAMESPACE"
DEFAULT_NAMESPACE = "medner"
DEFAULT_TOPIC = "medner-alerts"
# seconds per alarm evaluation: CloudWatch allows 10, 30 or a multiple of 60; decisions come once per monitoring
# window, so five minutes notifies soon enough without paying for high-resolution metrics
DEFAULT_ALARM_PERIOD = 300
# alarm name -> (metric, threshold on the level, what it means)
ALARMS = {
    "medner-drift-warning": ("DriftLevel", 1, "drift warning in live notes: TrainFlow retrains"),
    "medner-drift-critical": ("DriftLevel", 2, "critical drift in live notes: ExperimentFlow re-experiments"),
    "medner-quality-drop": ("QualityLevel", 2, "entity F1 of the served model dropped below the champion's"),
}


def _client(service: str, endpoint_url: str | None = None) -> Any:
    """boto3's client; without ``endpoint_url`` it reads ``$AWS_ENDPOINT_URL_<SERVICE>`` or ``$AWS_ENDPOINT_URL``."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url or None)


def metric_data(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """CloudWatch ``MetricData`` of one decision record (none for a record without scores)."""
    scores = record.get("scores") or {}
    when = {"Timestamp": parse_time(record["at"])} if record.get("at") else {}
    level = LEVELS.index(record["level"])
    if "combined" in scores:
        data = [{"MetricName": "DriftLevel", "Value": level, **when},
                {"MetricName": "DriftCombined", "Value": float(scores["combined"]), **when},
                *({"MetricName": "DriftScore", "Dimensions": [{"Name": "Feature", "Value": name}],
                   "Value": float(value), **when}
                  for name, value in sorted(scores.items()) if name not in NOT_FEATURES)]
        data += [{"MetricName": "DriftMeanShift", "Dimensions": [{"Name": "Feature", "Value": name}],
                  "Value": float(value), **when} for name, value in sorted((record.get("mean_shifts") or {}).items())]
        if "estimated_entity_f1" in scores:
            data.append({"MetricName": "EstimatedEntityF1", "Value": float(scores["estimated_entity_f1"]), **when})
        return data
    if record.get("kind") == "groups":
        return _group_data(record["groups"], when)
    if "entity_f1" in scores:
        return [{"MetricName": "QualityLevel", "Value": level, **when},
                {"MetricName": "QualityEntityF1", "Value": float(scores["entity_f1"]), **when}]
    return []


def _group_data(groups: Mapping[str, Mapping[str, Any]], when: dict[str, Any]) -> list[dict[str, Any]]:
    data = []
    for name, g in sorted(groups.items()):
        group = [{"Name": "Group", "Value": name}]
        if g["verdict"] != NO_VERDICT:
            data.append({"MetricName": "GroupLevel", "Dimensions": group, "Value": LEVELS.index(g["level"]), **when})
        data += [{"MetricName": "GroupDriftCombined", "Value": float(g[f"combined_vs_{against}"]), **when,
                  "Dimensions": [*group, {"Name": "Against", "Value": against}]}
                 for against in ("rest", "reference") if g.get(f"combined_vs_{against}") is not None]
        data += [{"MetricName": f"Group{kind.title()}EntityF1", "Dimensions": group,
                  "Value": float(g[f"{kind}_entity_f1"]), **when}
                 for kind in ("estimated", "reviewed") if g.get(f"{kind}_entity_f1") is not None]
    return data


def publish(record: Mapping[str, Any], namespace: str = DEFAULT_NAMESPACE, endpoint_url: str | None = None) -> int:
    """Put one decision's metrics into CloudWatch; returns how many."""
    data = metric_data(record)
    client = _client("cloudwatch", endpoint_url)
    for first in range(0, len(data), 1000):  # the API's most per call
        client.put_metric_data(Namespace=namespace, MetricData=data[first: first + 1000])
    return len(data)


def ensure_alarms(namespace: str = DEFAULT_NAMESPACE, topic: str = DEFAULT_TOPIC, endpoint_url: str | None = None,
                  period: int = DEFAULT_ALARM_PERIOD) -> tuple[str, list[str]]:
    """The SNS topic ``topic`` and an alarm per level on the metrics, each notifying the topic when it goes to
    ALARM (and back to OK); idempotent. Returns (topic ARN, alarm names)."""
    topic_arn = _client("sns", endpoint_url).create_topic(Name=topic)["TopicArn"]
    cloudwatch = _client("cloudwatch", endpoint_url)
    for name, (metric, threshold, meaning) in ALARMS.items():
        cloudwatch.put_metric_alarm(
            AlarmName=name, AlarmDescription=f"medner: {meaning}", Namespace=namespace, MetricName=metric,
            Statistic="Maximum", Period=period, EvaluationPeriods=1, Threshold=float(threshold),
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
            AlarmActions=[topic_arn], OKActions=[topic_arn])
    return topic_arn, list(ALARMS)
