"""The policy: level -> action, cooldown / dedup, alerts, and the decision log (local and on S3 via moto)."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitoring.policy import DecisionLog, action_for, alert, quality_level, recent_trigger
from monitoring.triggers import Started, act, execution_name

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REPORT = {"level": "warning", "scores": {"oov_word_rate": 0.31, "chars": 0.12}, "window_start": "20261128T110000Z",
          "window_end": "20261128T120000Z", "counts": {"notes": 500, "profiles": 2}, "combined": 0.31}


class RecordingBackend:
    """Records what it is asked to start (the policy's unit tests; real starts are in test_triggers.py)."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.names: list[str | None] = []

    def start(self, flow: str, parameters: Mapping[str, Any], *, name: str | None = None) -> Started:
        self.calls.append((flow, dict(parameters)))
        self.names.append(name)
        return Started(self.name, flow, f"{flow}/{len(self.calls)}", "successful")


def test_levels_map_to_actions() -> None:
    assert [action_for(level) for level in ("none", "warning", "critical")] == ["none", "retrain", "reexperiment"]
    with pytest.raises(ValueError, match="unknown drift level 'severe'"):
        action_for("severe")


def test_none_starts_nothing_but_is_recorded(tmp_path: Path) -> None:
    backend = RecordingBackend()
    decision = act({**REPORT, "level": "none"}, backend, tmp_path / "log.jsonl", now=NOW)
    assert backend.calls == [] and decision["status"] == "none" and decision["action"] == "none"
    assert DecisionLog(tmp_path / "log.jsonl").read() == [decision]


def test_the_decision_carries_the_estimated_accuracy(tmp_path: Path) -> None:
    estimate = {"entity_f1": 0.61, "precision": 0.6, "recall": 0.62, "entities": 480, "reference_f1": 0.7,
                "drop": 0.09}
    decision = act({**REPORT, "level": "critical", "estimate": estimate}, RecordingBackend(), tmp_path / "log.jsonl",
                   now=NOW)
    assert decision["scores"] == {"oov_word_rate": 0.31, "chars": 0.12, "combined": 0.31, "estimated_entity_f1": 0.61}
    assert act(REPORT, RecordingBackend(), tmp_path / "other.jsonl", now=NOW)["scores"] == {
        "oov_word_rate": 0.31, "chars": 0.12, "combined": 0.31}  # profiles without an estimate


def test_one_episode_triggers_one_run_and_escalation_still_triggers(tmp_path: Path) -> None:
    backend, log = RecordingBackend(), DecisionLog(tmp_path / "log.jsonl")
    params = {"TrainFlow": {"max-steps": 4}, "ExperimentFlow": {"grid": "[]"}}
    first = act(REPORT, backend, log, parameters=params, now=NOW)
    second = act(REPORT, backend, log, parameters=params, now=NOW + timedelta(hours=1))
    escalated = act({**REPORT, "level": "critical"}, backend, log, parameters=params, now=NOW + timedelta(hours=2))
    after_critical = act(REPORT, backend, log, parameters=params, now=NOW + timedelta(hours=3))
    after_cooldown = act(REPORT, backend, log, parameters=params, now=NOW + timedelta(hours=27))
    assert backend.calls == [("TrainFlow", {"max-steps": 4}), ("ExperimentFlow", {"grid": "[]"}),
                             ("TrainFlow", {"max-steps": 4})]
    assert [d["status"] for d in (first, second, escalated, after_critical, after_cooldown)] == [
        "triggered", "deduplicated", "triggered", "deduplicated", "triggered"]
    assert second["deduplicated_by"] == "TrainFlow/1" and after_critical["deduplicated_by"] == "ExperimentFlow/2"
    assert "cooldown" in second["reason"]
    records = log.read()
    assert len(records) == 5 and records[0] == first
    assert first["window_start"] == REPORT["window_start"] and first["scores"]["oov_word_rate"] == 0.31
    assert first["scores"]["combined"] == 0.31 and first["counts"] == {"notes": 500, "profiles": 2}
    assert first["at"] == "2026-11-28T12:00:00Z" and first["backend"] == "recording"
    assert recent_trigger(records, "warning", NOW + timedelta(hours=60)) is None


def test_failed_run_does_not_hold_the_cooldown(tmp_path: Path) -> None:
    class Failing(RecordingBackend):
        def start(self, flow: str, parameters: Mapping[str, Any], *, name: str | None = None) -> Started:
            super().start(flow, parameters, name=name)
            return Started(self.name, flow, f"{flow}/{len(self.calls)}", "failed")

    backend = Failing()
    assert act(REPORT, backend, tmp_path / "log.jsonl", now=NOW)["status"] == "failed"
    assert act(REPORT, backend, tmp_path / "log.jsonl", now=NOW + timedelta(minutes=5))["status"] == "failed"
    assert len(backend.calls) == 2


class Watching(RecordingBackend):
    """Also tells how each start went (``outcomes``: target -> status, default running), like a real backend."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, str] = {}
        self.asked: list[str] = []

    def status(self, target: str) -> str:
        self.asked.append(target)
        if self.outcomes.get(target) == "unreachable":
            raise ConnectionError("endpoint unreachable")
        return self.outcomes.get(target, "RUNNING")


def test_a_start_that_failed_later_holds_no_cooldown_and_the_log_says_so(tmp_path: Path) -> None:
    backend, log = Watching(), DecisionLog(tmp_path / "log.jsonl")
    first = act(REPORT, backend, log, now=NOW)
    held = act(REPORT, backend, log, now=NOW + timedelta(hours=1))  # the first still runs: it holds the cooldown
    backend.outcomes[first["target"]] = "ABORTED"
    retriggered = act(REPORT, backend, log, now=NOW + timedelta(hours=2))
    again = act(REPORT, backend, log, now=NOW + timedelta(hours=3))  # the new start holds it now
    assert [d["status"] for d in (first, held, retriggered, again)] == [
        "triggered", "deduplicated", "triggered", "deduplicated"]
    assert held["deduplicated_by"] == first["target"] and again["deduplicated_by"] == retriggered["target"]
    assert len(backend.calls) == 2 and backend.asked == [first["target"], first["target"], retriggered["target"]]
    [seen] = [r for r in log.read() if r["status"] == "run-failed"]
    assert (seen["target"], seen["run_status"], seen["flow"], seen["at"]) == (
        first["target"], "ABORTED", "TrainFlow", "2026-11-28T14:00:00Z")
    assert "ended ABORTED" in seen["reason"]
    assert recent_trigger(log.read(), "warning", NOW + timedelta(hours=3))["target"] == retriggered["target"]


def test_a_start_whose_state_cannot_be_told_still_holds_the_cooldown(tmp_path: Path) -> None:
    backend, log = Watching(), DecisionLog(tmp_path / "log.jsonl")
    first = act(REPORT, backend, log, now=NOW)
    backend.outcomes[first["target"]] = "unreachable"
    assert act(REPORT, backend, log, now=NOW + timedelta(hours=1))["status"] == "deduplicated"
    other = Watching()  # a start made by another backend is not asked about
    other.name = "elsewhere"
    assert act(REPORT, other, log, now=NOW + timedelta(hours=2))["status"] == "deduplicated" and other.asked == []
    assert act(REPORT, RecordingBackend(), log, now=NOW + timedelta(hours=3))["status"] == "deduplicated"  # no status
    assert len(backend.calls) == 1 and not any(r["status"] == "run-failed" for r in log.read())


def test_a_decision_for_a_window_starts_its_flow_under_the_same_name_each_time(tmp_path: Path) -> None:
    backend = RecordingBackend()
    for log in ("a.jsonl", "b.jsonl"):  # the same decision made twice (a retried act whose record was lost)
        act(REPORT, backend, tmp_path / log, parameters={"TrainFlow": {"epochs": 2}}, now=NOW)
    act({**REPORT, "window_end": "20261128T130000Z"}, backend, tmp_path / "c.jsonl", now=NOW)
    act(REPORT, backend, tmp_path / "d.jsonl", parameters={"TrainFlow": {"epochs": 3}}, now=NOW)
    first, again, next_window, other_parameters = backend.names
    assert first == again and len({first, next_window, other_parameters}) == 3
    assert first.startswith("TrainFlow-20261128T120000Z-") and all(
        re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name) for name in backend.names)
    assert DecisionLog(tmp_path / "a.jsonl").read()[0]["execution_name"] == first
    assert len(execution_name("F" * 200, "2026-11-28T12:00:00+00:00" * 4, {"x": 1})) <= 80
    act({"level": "warning", "scores": {}}, backend, tmp_path / "e.jsonl", now=NOW)  # no window: the backend names it
    assert backend.names[-1] is None


def test_critical_alerts_in_the_log_and_to_a_webhook(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="medner.monitoring"):
            decision = act({**REPORT, "level": "critical"}, RecordingBackend(), tmp_path / "log.jsonl", now=NOW,
                           webhook=f"http://127.0.0.1:{server.server_port}/alert")
    finally:
        server.shutdown()
    assert decision["alert"] is True and decision["flow"] == "ExperimentFlow"
    assert any("ALERT drift level critical" in r.getMessage() and "ExperimentFlow/1" in r.getMessage()
               for r in caplog.records)
    assert received == [decision]
    assert alert(decision, webhook="http://127.0.0.1:9/unreachable") is False  # logged, never raised


def test_quality_drop_beyond_threshold_is_critical() -> None:
    assert quality_level(0.60, 0.66) == "critical"
    assert quality_level(0.62, 0.66) == "none"
    assert quality_level(0.62, 0.66, max_drop=0.02) == "critical"


def test_decision_log_on_s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.aws import TEST_CREDENTIALS, aws

    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = aws(moto_endpoint, "s3")
    s3.create_bucket(Bucket="monitoring")
    log = DecisionLog("s3://monitoring/decisions", endpoint_url=moto_endpoint)
    assert log.read() == []
    backend = RecordingBackend()
    act(REPORT, backend, log, now=NOW)
    act(REPORT, backend, log, now=NOW + timedelta(hours=1))  # within the cooldown of the first
    assert [r["status"] for r in log.read()] == ["triggered", "deduplicated"]
    assert len(backend.calls) == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="monitoring")["Contents"]]
    assert len(keys) == 2 and all(k.startswith("decisions/") and k.endswith(".json") for k in keys)  # one per record
    s3.put_object(Bucket="monitoring", Key="decisions", Body=b'{"status": "legacy"}\n')  # the older single object
    assert [r["status"] for r in log.read()] == ["legacy", "triggered", "deduplicated"]


def test_concurrent_writers_lose_no_decision(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    from tests.aws import TEST_CREDENTIALS, aws

    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    aws(moto_endpoint, "s3").create_bucket(Bucket="monitoring")
    writers, records = 4, 10
    for location in ("s3://monitoring/decisions", tmp_path / "decisions.jsonl"):
        start = threading.Barrier(writers)

        def write(writer: int, location: str | Path = location, start: threading.Barrier = start) -> None:
            log = DecisionLog(location, endpoint_url=moto_endpoint)  # each writer its own, as separate processes
            start.wait()
            for n in range(records):
                log.append({"writer": writer, "n": n})

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        written = DecisionLog(location, endpoint_url=moto_endpoint).read()
        assert sorted((r["writer"], r["n"]) for r in written) == [(w, n) for w in range(writers)
                                                                   for n in range(records)], location
        for writer in range(writers):  # each writer's records in the order it wrote them
            assert [r["n"] for r in written if r["writer"] == writer] == list(range(records))
