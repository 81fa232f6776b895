"""Triggers start real flows: Step Functions executions of the Metaflow-generated state machines on a moto server
with the input `step-functions trigger` builds, and the backends' options (branches). Local runs through the
Runner closing the loop: tests/flows/test_train_flow.py (warning) and tests/flows/test_experiment_flow.py
(critical); the inbox's: tests/monitoring/test_inbox.py."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring.policy import DecisionLog
from monitoring.triggers import (
    LocalBackend,
    StepFunctionsBackend,
    TriggerError,
    act,
    backend_options,
    closing_the_loop,
    cooldown_holder,
    read_report,
)
from tests.aws import TEST_CREDENTIALS, aws, deploy, placeholder_state_machine
from tests.flows.conftest import FlowRunner

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WINDOW = {"window_start": "20261128T110000Z", "window_end": "20261128T120000Z", "scores": {"oov_word_rate": 0.2}}
CRF_GRID = json.dumps([{"name": "crf-baseline", "kind": "crf", "max_iterations": 20}])


def local_env(root: Path, corpus: Path) -> dict[str, str]:
    """Metaflow's local datastore and metadata under ``root``, reading the tiny corpus."""
    return {"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root), "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local", "MEDNER_DATA_DIR": str(corpus), "USERNAME": "medner-tests",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WHYLOGS_NO_ANALYTICS": "1"}


def client(root: Path, env: dict[str, str]) -> FlowRunner:
    return FlowRunner(root, {**os.environ, **env})


@pytest.mark.slow
def test_step_functions_executions_of_deployed_state_machines(moto_endpoint: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for proc in deploy(["train_flow.py", "experiment_flow.py"], moto_endpoint, tmp_path):  # `step-functions create`
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    sfn = aws(moto_endpoint, "stepfunctions")
    machines = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    assert set(machines) == {"medner.prod.TrainFlow", "medner.prod.ExperimentFlow"}  # Metaflow-generated, both
    steps = json.loads(sfn.describe_state_machine(stateMachineArn=machines["medner.prod.ExperimentFlow"]
                                                  )["definition"])["States"]
    assert "publish" in steps and "compare" in steps  # exports and promotes its challenger
    backend, log = StepFunctionsBackend(endpoint_url=moto_endpoint), DecisionLog(tmp_path / "decisions.jsonl")
    params = closing_the_loop({"TrainFlow": {"max-steps": 4, "data-run": "DataFlow/7"},
                               "ExperimentFlow": {"grid": CRF_GRID}}, "s3://models/ner", "triton.internal:8001")
    assert params["ExperimentFlow"] == {"repository": "s3://models/ner", "promote-url": "triton.internal:8001",
                                        "grid": CRF_GRID}  # the loop closes: the started flows export and promote

    warning = act({"level": "warning", **WINDOW}, backend, log, parameters=params, now=NOW)
    critical = act({"level": "critical", **WINDOW}, backend, log, parameters=params, now=NOW + timedelta(hours=1))
    assert warning["status"] == critical["status"] == "triggered"
    for decision, flow, expected in ((warning, "TrainFlow", params["TrainFlow"]),
                                     (critical, "ExperimentFlow", params["ExperimentFlow"])):
        execution = sfn.describe_execution(executionArn=decision["target"])
        assert execution["stateMachineArn"].endswith(f":stateMachine:medner.prod.{flow}")
        outer = json.loads(execution["input"])
        assert list(outer) == ["Parameters"] and json.loads(outer["Parameters"]) == expected
        listed = sfn.list_executions(stateMachineArn=execution["stateMachineArn"])["executions"]
        assert [e["executionArn"] for e in listed] == [decision["target"]]
    assert [r["target"] for r in log.read()] == [warning["target"], critical["target"]]

    with pytest.raises(TriggerError, match="python flows/data_flow.py --production step-functions create"):
        backend.start("DataFlow", {})
    assert StepFunctionsBackend(endpoint_url=moto_endpoint, prefix="ops").state_machine_name("TrainFlow") == \
        "ops_medner.prod.TrainFlow"
    researcher = StepFunctionsBackend(endpoint_url=moto_endpoint, branch="test.drift_study")
    with pytest.raises(TriggerError, match="medner.test.drift_study.TrainFlow.*--branch drift_study step-functions"):
        researcher.start("TrainFlow", {})  # another branch's deployment: not the production one


def test_cli_act_on_a_drift_report(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from medner.cli import app

    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    sfn = aws(moto_endpoint, "stepfunctions")
    machine = placeholder_state_machine(moto_endpoint, "TrainFlow")
    (tmp_path / "report.json").write_text(json.dumps({"level": "warning", **WINDOW}))
    args = ["monitor", "act", str(tmp_path / "report.json"), "--backend", "stepfunctions", "--endpoint-url",
            moto_endpoint, "--log", str(tmp_path / "log.jsonl"), "--train-params", '{"epochs": 2}']
    first, second = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    started, repeated = json.loads(first.stdout), json.loads(second.stdout)
    assert started["status"] == "triggered" and repeated["status"] == "deduplicated"
    [execution] = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert execution["executionArn"] == started["target"]
    assert json.loads(json.loads(sfn.describe_execution(executionArn=started["target"])["input"])["Parameters"]) == {
        "epochs": 2}


def test_a_decision_made_again_for_its_window_starts_one_execution(moto_endpoint: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A retried MonitorFlow act whose first attempt started the flow but recorded nothing (a fresh log each time):
    the execution's name is the decision's, so AWS answers with the first execution, running or finished."""
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    sfn = aws(moto_endpoint, "stepfunctions")
    machine = placeholder_state_machine(moto_endpoint, "TrainFlow")
    backend = StepFunctionsBackend(endpoint_url=moto_endpoint)
    report = {"level": "warning", **WINDOW}
    first = act(report, backend, tmp_path / "first.jsonl", now=NOW)
    running = act(report, backend, tmp_path / "retry.jsonl", now=NOW)  # same name and input while it runs
    [execution] = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert first["target"] == running["target"] == execution["executionArn"]
    assert execution["name"] == first["execution_name"] and first["execution_name"].startswith(
        "TrainFlow-20261128T120000Z-")
    sfn.stop_execution(executionArn=first["target"])
    finished = act(report, backend, tmp_path / "late.jsonl", now=NOW)  # AWS: ExecutionAlreadyExists
    assert [e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]] == [
        first["target"]]
    assert (finished["target"], finished["status"], finished["run_status"], finished["existing"]) == (
        first["target"], "failed", "ABORTED", True)
    nxt = act({**report, "window_end": "20261128T130000Z"}, backend, tmp_path / "next.jsonl", now=NOW)
    assert nxt["target"] != first["target"] and len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 2


def test_a_decision_names_the_features_a_warning_came_from(moto_endpoint: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A window can warn with every distance low, from one feature beyond its own bound or one mean beyond its own:
    the decision log says which, not only the top distances."""
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    placeholder_state_machine(moto_endpoint, "TrainFlow")
    report = {"level": "warning", "window_start": "20261128T090000Z", "window_end": "20261128T100000Z",
              "scores": {"oov_word_rate": 0.12, "misspelling_rate": 0.1, "chars": 0.05},
              "beyond": {"oov_word_rate": 0.11}, "means_beyond": {"misspelling_rate": 0.2},
              "mean_shifts": {"misspelling_rate": 0.71, "chars": 0.2}}
    entry = act(report, StepFunctionsBackend(endpoint_url=moto_endpoint), tmp_path / "log.jsonl", now=NOW)
    assert entry["reason"] == ("drift level warning; top features oov_word_rate 0.120, misspelling_rate 0.100, "
                               "chars 0.050; beyond their own bound: oov_word_rate; means beyond their own bound: "
                               "misspelling_rate +0.710 sd")
    assert entry["mean_shifts"] == {"misspelling_rate": 0.71, "chars": 0.2}  # for the gauges (monitoring.metrics)


def test_an_aborted_execution_does_not_hold_the_cooldown(moto_endpoint: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    sfn = aws(moto_endpoint, "stepfunctions")
    machine = placeholder_state_machine(moto_endpoint, "TrainFlow")
    backend, log = StepFunctionsBackend(endpoint_url=moto_endpoint), DecisionLog(tmp_path / "decisions.jsonl")

    def hour(n: int) -> dict:
        end = (NOW + timedelta(hours=n)).strftime("%Y%m%dT%H%M%SZ")
        return act({"level": "warning", "window_end": end}, backend, log, now=NOW + timedelta(hours=n))

    first, running = hour(0), hour(1)
    assert (first["status"], running["status"], running["deduplicated_by"]) == (
        "triggered", "deduplicated", first["target"])
    sfn.stop_execution(executionArn=first["target"])  # an operator aborts it (FAILED and TIMED_OUT read the same)
    retriggered = hour(2)
    assert retriggered["status"] == "triggered" and retriggered["target"] != first["target"]
    assert [(r["status"], r.get("run_status")) for r in log.read()] == [
        ("triggered", "RUNNING"), ("deduplicated", None), ("run-failed", "ABORTED"), ("triggered", "RUNNING")]
    assert log.read()[2]["target"] == first["target"]
    assert hour(3)["deduplicated_by"] == retriggered["target"]  # the new execution runs: it holds the cooldown
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 2


@pytest.mark.slow
def test_local_runs_carry_the_decision_s_name_and_are_read_back(tiny_corpus: Path, tmp_path: Path) -> None:
    """The local backend tags a run with the decision's name (made again, the decision finds that run) and tells
    its state by the Metaflow client; a start recorded as triggered whose run the client reads as failed holds no
    cooldown."""
    env = local_env(tmp_path / "metaflow", tiny_corpus)
    backend = LocalBackend(env=env, cwd=tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, text in (("train_sent", "a\n"), ("train_label", "DX\n"), ("test_sent", "c\n"), ("test_label", "O\n")):
        (bad / name).write_text(text)
    failed = backend.start("DataFlow", {"data-dir": str(bad)}, name="DataFlow-20261128T120000Z-0a1b2c3d")
    done = backend.start("DataFlow", {})
    assert (failed.status, done.status) == ("failed", "successful")
    assert [backend.status(run.target) for run in (failed, done)] == ["failed", "successful"]
    assert backend.status("DataFlow/404") == "unknown"
    tags = client(tmp_path, env).client(f"result = sorted(Run({failed.target!r}).user_tags)")
    assert "medner_decision:DataFlow-20261128T120000Z-0a1b2c3d" in tags
    again = backend.start("DataFlow", {"data-dir": str(bad)}, name="DataFlow-20261128T120000Z-0a1b2c3d")
    assert (again.target, again.status, again.existing) == (failed.target, "failed", True)  # not run twice
    assert client(tmp_path, env).client("result = len(list(Flow('DataFlow')))") == 2

    log = DecisionLog(tmp_path / "decisions.jsonl")
    for run in (done, failed):  # as a writer that records before its run ends would: the failed one is the latest
        log.append({"at": "2026-11-28T12:00:00Z", "level": "warning", "action": "retrain", "flow": "TrainFlow",
                    "backend": "local", "target": run.target, "status": "triggered"})
    assert cooldown_holder(log, backend, "warning", NOW + timedelta(hours=1))["target"] == done.target
    assert [(r["status"], r["target"]) for r in log.read()[2:]] == [("run-failed", failed.target)]


def test_a_report_that_is_not_json_names_its_file_and_line(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text('{"level": "warning",\n "scores": oops}')
    with pytest.raises(ValueError, match=f"{report}: not a drift report: not JSON \\(line 2: Expecting value\\)"):
        read_report(report)
    report.write_text('{"level": "none"}')
    assert read_report(report) == {"level": "none"}


def test_an_endpoint_url_matters_to_step_functions_only_the_branch_to_both() -> None:
    assert backend_options("stepfunctions", "http://127.0.0.1:5000") == {"endpoint_url": "http://127.0.0.1:5000",
                                                                         "branch": "prod"}
    assert backend_options("stepfunctions", None) == {"branch": "prod"} == backend_options("local", "http://x:1")
    assert backend_options("local", None, "test.study") == {"branch": "test.study"}
    assert LocalBackend(branch="test.study").top_level == {"branch": "study"}  # `--branch study run`
    assert LocalBackend(branch="prod.canary").top_level == {"branch": "canary", "production": True}
    assert LocalBackend().top_level == {"production": True} and LocalBackend(branch="user.me").top_level == {}
    with pytest.raises(ValueError, match="unknown @project branch 'staging'"):
        LocalBackend(branch="staging")


def test_closing_the_loop_adds_export_and_promotion_to_started_flows() -> None:
    assert closing_the_loop({"TrainFlow": {"epochs": 2}}, "model_repository", "") == {"TrainFlow": {"epochs": 2}}
    closed = closing_the_loop({"TrainFlow": {"repository": "s3://other/ner"}}, "model_repository", "127.0.0.1:8001")
    assert closed == {"TrainFlow": {"repository": "s3://other/ner", "promote-url": "127.0.0.1:8001"},  # given wins
                      "ExperimentFlow": {"repository": "model_repository", "promote-url": "127.0.0.1:8001"}}
    fleet = closing_the_loop({}, "s3://models/ner", "", promote=True)  # no server: the record the fleet follows
    assert fleet == {flow: {"repository": "s3://models/ner", "promote": True} for flow in ("TrainFlow",
                                                                                           "ExperimentFlow")}


def test_the_decision_log_named_after_import_is_the_one_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """$MEDNER_DECISION_LOG is read when a decision is recorded, not when monitoring is imported."""
    log = tmp_path / "decisions.jsonl"
    monkeypatch.setenv("MEDNER_DECISION_LOG", str(log))  # monitoring.triggers was imported long before
    entry = act({"level": "none", **WINDOW}, "local", now=NOW)
    assert [r["action"] for r in DecisionLog(log).read()] == ["none"] and entry["action"] == "none"
