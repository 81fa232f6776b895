"""The alert rules as Prometheus evaluates them (promtool's rule unit tests, Debian's prometheus package): replicas
serving different versions alert after ten minutes; a replica that is switching versions does not."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "medner-rules.yml"


def served(model: str, replica: str, version: int, values: str) -> dict:
    """A ``medner_served_version`` series as a replica's python model reports it (two instances: one is enough)."""
    labels = f'model="{model}",version="{version}",model_instance="{model}_0_0",instance="{replica}:8002"'
    return {"series": f"medner_served_version{{{labels}}}", "values": values}


def test_replicas_on_different_versions_alert_and_a_switch_does_not(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: `make test` installs Debian's prometheus package (as root)")
    diverged = {"exp_labels": {"model": "ner", "severity": "warning"},
                "exp_annotations": {"summary": "Replicas serve different versions of ner: one did not follow "
                                               "serving.json", "runbook": "docs/serving.md"}}
    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            served("ner", "a", 2, "2x20"), served("ner", "b", 1, "1x20"),  # b never followed the promotion
            # ner_int8: a switched from v1 to v2 (v1 still reported for 15 minutes: its newest counts), b is on
            # v2: in line
            served("ner_int8", "a", 1, "1x15 _x5"), served("ner_int8", "a", 2, "2x20"),
            served("ner_int8", "b", 2, "2x20"),
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "MednerReplicasDiverge", "exp_alerts": []},  # pending, not firing
            {"eval_time": "15m", "alertname": "MednerReplicasDiverge", "exp_alerts": [diverged]},
        ],
    }]}
    spec = tmp_path / "tests.yml"
    spec.write_text(json.dumps(tests))  # YAML is a superset of JSON
    result = subprocess.run(["promtool", "test", "rules", str(spec)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
