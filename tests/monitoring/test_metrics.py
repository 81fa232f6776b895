"""Drift and quality as Prometheus gauges, and a real Prometheus (Debian's package) on 127.0.0.1 scraping them and
Triton's /metrics with the committed alert rules: the critical-drift rule fires on a drifted window, not before;
every Grafana panel's query is one Prometheus accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from medner.triton import free_ports
from monitoring.metrics import metrics_text, serve_metrics_in_background
from monitoring.policy import DecisionLog, record

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GROUPS = {name: {"level": level, "verdict": verdict, "notes": 120, "combined_vs_rest": rest,
                 "combined_vs_reference": 0.2, "estimated_entity_f1": 0.6}
          for name, level, verdict, rest in [("clinic_a", "none", "in line", 0.1),
                                             ("clinic_b", "none", "in line", 0.12),
                                             ("clinic_d", "warning", "diverging", 0.5),
                                             ("tiny", "none", "no verdict", None)]}
DRIFTED = {"oov_word_rate": 0.41, "sentence_length": 0.22, "combined": 0.35, "estimated_entity_f1": 0.58}


def test_gauges_of_the_latest_drift_and_quality_records() -> None:
    records = [record("warning", "retrain", "local", "drift", status="triggered", scores={"oov": 0.1, "combined": 0.12},
                      window={"window_end": "20261201T110000Z"}),
               record("none", "none", "local", "quality", status="none", scores={"entity_f1": 0.64}),
               record("critical", "reexperiment", "local", "drift", status="triggered", scores=DRIFTED,
                      window={"window_end": "20261201T120000Z"}, mean_shifts={"oov_word_rate": 1.25})]
    text = metrics_text(records)
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert samples == {"medner_drift_level": "2.0", "medner_drift_combined": "0.35",
                       'medner_drift_score{feature="oov_word_rate"}': "0.41",
                       'medner_drift_score{feature="sentence_length"}': "0.22",
                       'medner_drift_mean_shift{feature="oov_word_rate"}': "1.25",
                       "medner_drift_window_end_seconds": "1796126400.0", "medner_estimated_entity_f1": "0.58",
                       "medner_quality_level": "0.0", "medner_quality_entity_f1": "0.64"}
    assert "# TYPE medner_drift_level gauge" in text
    assert metrics_text([]) == "\n"  # nothing measured yet: no gauge


def prometheus_api(port: int, path: str, **query: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def wait_for(port: int, query: str, predicate) -> list:
    """Prometheus' answer to ``query`` once ``predicate`` holds for it (scrapes and rule evaluations happen every
    second; one that never comes fails by the suite's per-test timeout)."""
    while True:
        result = prometheus_api(port, "query", query=query)["result"]
        if predicate(result):
            return result
        time.sleep(0.5)


@pytest.mark.slow
def test_prometheus_scrapes_triton_and_the_gauges_and_the_rule_fires_on_drift(triton_server, tmp_path: Path) -> None:
    from clients.ner_client import NerClient

    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: `make test` installs Debian's package (as root)")
    log = DecisionLog(tmp_path / "decisions.jsonl")
    log.append(record("none", "none", "local", "drift", status="none", scores={"oov_word_rate": 0.01, "combined": 0.02},
                      window={"window_end": "20261201T110000Z"}))
    exporter = serve_metrics_in_background(log)
    [port] = free_ports(1)
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "medner-rules.yml")],
        "scrape_configs": [
            {"job_name": "triton", "static_configs": [{"targets": [f"127.0.0.1:{triton_server.metrics_port}"]}]},
            {"job_name": "medner", "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_port}"]}]}]}))
    with NerClient(triton_server.grpc_url) as client:
        client.extract(["Asthma was treated with inhaled steroids."])
    server = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:  # ready once it answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "prometheus exited"
                time.sleep(0.3)
        served = wait_for(port, 'nv_inference_request_success{model="ner"}', lambda r: r)
        assert float(served[0]["value"][1]) >= 1  # Triton's own metrics, per model and version
        wait_for(port, "medner_drift_level", lambda r: r and r[0]["value"][1] == "0")
        rules = prometheus_api(port, "rules")["groups"][0]["rules"]
        assert {r["name"] for r in rules} >= {"MednerDriftCritical", "MednerQualityDrop"}
        wait_for(port, 'ALERTS{alertname="MednerDriftCritical"}', lambda r: r == [])  # no drift: not firing

        log.append(record("critical", "reexperiment", "local", "drift", status="triggered", scores=DRIFTED,
                          window={"window_end": "20261201T120000Z"},
                          mean_shifts={"oov_word_rate": 1.25}))  # a drifted window, as MonitorFlow records it
        log.append(record("critical", "reexperiment", "local", "quality", status="triggered",
                          scores={"entity_f1": 0.52}))  # and a quality drop measured from reviews
        log.append(record("warning", "none", "-", "groups", status="observed", kind="groups", groups=GROUPS))
        for alert in ("MednerDriftCritical", "MednerQualityDrop"):
            firing = wait_for(port, f'ALERTS{{alertname="{alert}",alertstate="firing"}}', lambda r: r)
            assert firing[0]["metric"]["severity"] == "critical"
        diverging = wait_for(port, 'ALERTS{alertname="MednerGroupDiverging",alertstate="firing"}', lambda r: r)
        assert [a["metric"]["group"] for a in diverging] == ["clinic_d"]  # the one group, not the others
        assert prometheus_api(port, "query", query="medner_drift_combined")["result"][0]["value"][1] == "0.35"
        assert prometheus_api(port, "query", query="medner_estimated_entity_f1")["result"][0]["value"][1] == "0.58"

        dashboard = json.loads((DEPLOY / "grafana" / "medner.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:  # every query parses and runs (the ones on Triton's metrics have data)
                result = prometheus_api(port, "query", query=target["expr"])["result"]
                assert result or "rate(" in target["expr"], (panel["title"], target["expr"])
    finally:
        server.terminate()
        server.wait(30)
        exporter.shutdown()
