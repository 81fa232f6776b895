"""Model-quality monitoring: entity F1 of the served model on annotated live samples against the champion's
test F1 from lineage; a drop beyond the threshold acts like critical drift (`medner monitor quality`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medner.cli import app
from medner.data import read_behealthy
from monitoring.quality import champion_f1, check_quality, predicted_labels
from tests.aws import TEST_CREDENTIALS, aws, placeholder_state_machine

runner = CliRunner()


def repository_with_champion_f1(exported: Path, target: Path, f1: float) -> Path:
    """A view of ``exported`` (served models linked) whose champion lineage claims test entity F1 ``f1``."""
    for model in ("ner", "ner_int8"):
        os.symlink(exported / model, target / model)
    lineage = json.loads((exported / "ner_encoder" / "1" / "lineage.json").read_text())
    lineage["metrics_fp32"]["entity_f1"] = f1
    (target / "ner_encoder" / "1").mkdir(parents=True)
    (target / "ner_encoder" / "1" / "lineage.json").write_text(json.dumps(lineage))
    return target


def test_quality_on_the_test_split_matches_the_champion(exported_repository: Path, tiny_corpus: Path) -> None:
    version, best = champion_f1(exported_repository)
    report = check_quality([tiny_corpus / "test_sent"], exported_repository, min_sentences=1)
    # the served pipeline on the very sentences export scored: the same F1, so no alarm
    assert version == 1 and report["version"] == 1 and report["sentences"] == 20
    assert report["entity_f1"] == pytest.approx(best, abs=0.02) and report["level"] == "none"
    too_few = check_quality([tiny_corpus / "test_sent"], exported_repository)
    assert too_few["too_few"] and too_few["level"] == "none"


def test_live_server_and_in_process_agree(triton_server, exported_repository: Path, tiny_corpus: Path) -> None:
    from clients.local import LocalNerModel
    from clients.ner_client import NerClient

    sentences = read_behealthy(tiny_corpus)["test"]
    with NerClient(triton_server.grpc_url) as client:
        served = predicted_labels(sentences, client.extract)
    assert served == predicted_labels(sentences, LocalNerModel(exported_repository).extract)


def test_quality_drop_triggers_experiment_flow_on_step_functions(
        exported_repository: Path, tiny_corpus: Path, tmp_path: Path, moto_endpoint: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    sfn = aws(moto_endpoint, "stepfunctions")
    machine = placeholder_state_machine(moto_endpoint, "ExperimentFlow")
    (tmp_path / "repo").mkdir()
    repository = repository_with_champion_f1(exported_repository, tmp_path / "repo", 0.95)
    log = tmp_path / "decisions.jsonl"
    result = runner.invoke(app, [
        "monitor", "quality", str(tiny_corpus / "test_sent"), "--repository", str(repository), "--min-sentences", "1",
        "--trigger", "--backend", "stepfunctions", "--endpoint-url", moto_endpoint, "--log", str(log),
        "--experiment-params", '{"overrides": "{\\"threads\\": 1}"}'])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["level"] == "critical" and report["champion_entity_f1"] == 0.95 and report["drop"] > 0.05
    decision = report["decision"]
    assert decision["action"] == "reexperiment" and decision["status"] == "triggered" and decision["alert"]
    assert decision["reason"].startswith("quality: entity F1")
    [execution] = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert execution["executionArn"] == decision["target"]
    sent = json.loads(sfn.describe_execution(executionArn=decision["target"])["input"])
    assert json.loads(sent["Parameters"]) == {"overrides": '{"threads": 1}'}
    assert [json.loads(line)["target"] for line in log.read_text().splitlines()] == [decision["target"]]


def test_quality_rejects_malformed_samples_with_file_and_line(tmp_path: Path, exported_repository: Path) -> None:
    (tmp_path / "live.jsonl").write_text('{"text": "asthma", "entities": []}\n{"text": 3}\n')
    result = runner.invoke(app, ["monitor", "quality", str(tmp_path / "live.jsonl"), "--repository",
                                 str(exported_repository)])
    assert result.exit_code == 1 and f"{tmp_path / 'live.jsonl'}:2:" in result.stderr
