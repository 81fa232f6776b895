"""The annotated-data inbox: a valid file starts DataFlow -> TrainFlow (real runs), a malformed one is
rejected with file and line and starts nothing; files are processed once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitoring.inbox import process_inbox
from monitoring.policy import DecisionLog
from monitoring.triggers import LocalBackend, StepFunctionsBackend
from tests.monitoring.test_triggers import client, local_env

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MARKER = "Zyxwvu"  # a word that must never leave the data files (no note text in logs or records)


def jsonl(*texts: str) -> str:
    """Records with one disease (the first word) each."""
    return "".join(json.dumps({"text": t, "entities": [{"start": 0, "end": t.index(" "), "label": "D"}]}) + "\n"
                   for t in texts)


def write_malformed(inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    good = json.dumps({"text": f"asthma in {MARKER} patients", "entities": []})
    bad = json.dumps({"text": f"{MARKER} given metformin", "entities": [{"start": 0, "end": 6, "label": "X"}]})
    (inbox / "bad.jsonl").write_text(f"{good}\n{bad}\n")
    (inbox / "pair_sent").write_text(f"{MARKER}\nhelped\n\nasthma\n")
    (inbox / "pair_label").write_text("T\nO\n\nDX\n")


def no_text_leaves(inbox: Path, log: Path) -> None:
    for path in [log, inbox / ".manifest.json", *(inbox / "rejected").glob("*.error.txt")]:
        assert MARKER not in path.read_text(), path


def test_malformed_files_are_rejected_with_file_and_line_and_start_nothing(tmp_path: Path, tiny_corpus: Path
                                                                           ) -> None:
    inbox, log = tmp_path / "inbox", tmp_path / "decisions.jsonl"
    write_malformed(inbox)
    backend = LocalBackend(env=local_env(tmp_path / "metaflow", tiny_corpus), cwd=tmp_path)
    result = process_inbox(inbox, backend, log, now=NOW)
    assert result.accepted == []
    assert result.rejected["bad.jsonl"].startswith(f"{inbox / 'bad.jsonl'}:2: entity 0 has label 'X'")
    assert result.rejected["pair_sent"].startswith(f"{inbox / 'pair_label'}:4: unknown label 'DX'")
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
        "bad.jsonl", "bad.jsonl.error.txt", "pair_label", "pair_sent", "pair_sent.error.txt"]
    assert (inbox / "rejected" / "bad.jsonl.error.txt").read_text().startswith(f"{inbox / 'bad.jsonl'}:2:")
    assert not (tmp_path / "metaflow").exists()  # no flow ran: no datastore was even created
    records = DecisionLog(log).read()
    assert [(r["action"], r["status"], r["file"]) for r in records] == [
        ("ingest", "rejected", "bad.jsonl"), ("ingest", "rejected", "pair_sent")]
    no_text_leaves(inbox, log)

    # the same content dropped again is not processed again; half a pair waits for its other half
    write_malformed(inbox)
    assert process_inbox(inbox, backend, log, now=NOW).decisions == []
    (inbox / "bad.jsonl").unlink()
    (inbox / "pair_sent").unlink()
    (inbox / "pair_label").write_text("T\nO\n\nD\n")
    assert process_inbox(inbox, backend, log, now=NOW).decisions == []
    assert (inbox / "pair_label").exists() and len(DecisionLog(log).read()) == 2


def test_cli_reports_rejections(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medner.cli import app

    write_malformed(tmp_path / "inbox")
    result = CliRunner().invoke(app, ["monitor", "inbox", "--inbox", str(tmp_path / "inbox"), "--log",
                                      str(tmp_path / "log.jsonl")])
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["runs"] == []
    assert f"rejected bad.jsonl: {tmp_path / 'inbox' / 'bad.jsonl'}:2:" in result.stderr


@pytest.mark.slow
def test_new_annotated_file_runs_data_flow_then_train_flow(tmp_path: Path, tiny_corpus: Path,
                                                            tiny_training: dict[str, int | str]) -> None:
    inbox, log = tmp_path / "inbox", tmp_path / "decisions.jsonl"
    inbox.mkdir()
    (inbox / "new.jsonl").write_text(jsonl(f"asthma flared in {MARKER} patients", "migraine returned after surgery",
                                           "hypertension was treated"))
    (inbox / "broken.jsonl").write_text("{not json\n")
    env = local_env(tmp_path / "metaflow", tiny_corpus)
    result = process_inbox(inbox, LocalBackend(env=env, cwd=tmp_path), log,
                           train_parameters={**tiny_training, "max-train-sentences": 16}, now=NOW)
    assert result.accepted == ["new.jsonl"] and list(result.rejected) == ["broken.jsonl"]
    assert result.rejected["broken.jsonl"].startswith(f"{inbox / 'broken.jsonl'}:1: invalid JSON")
    data, train = result.decisions[-2:]
    assert (data["flow"], data["status"], train["flow"], train["status"]) == (
        "DataFlow", "triggered", "TrainFlow", "triggered"), result.decisions
    assert data["parameters"]["extra-annotations"] == str((inbox / "accepted" / "new.jsonl").resolve())
    assert train["parameters"]["data-run"] == data["target"]
    runs = client(tmp_path / "metaflow", env).client(
        f"data, train = Run('{data['target']}'), Run('{train['target']}')\n"
        "result = dict(ok=data.successful and train.successful, sizes=[len(data.data.train) + len(data.data.dev),"
        " len(data.data.test)], source=train.data.data_source, version=train.data.data_version,"
        " data_version=data.data.data_version)")
    assert runs["ok"] and runs["sizes"] == [60 + 3, 20]  # the tiny corpus plus the three new sentences
    assert runs["source"] == data["target"] and runs["version"] == runs["data_version"]
    assert [(r["action"], r["status"]) for r in DecisionLog(log).read()] == [
        ("ingest", "rejected"), ("ingest", "accepted"), ("ingest", "triggered"), ("retrain", "triggered")]
    no_text_leaves(inbox, log)
    assert process_inbox(inbox, LocalBackend(env=env, cwd=tmp_path), log, now=NOW).decisions == []  # once only


def test_inbox_on_step_functions_starts_data_flow(moto_endpoint: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.aws import TEST_CREDENTIALS, aws, placeholder_state_machine

    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    sfn = aws(moto_endpoint, "stepfunctions")
    machine = placeholder_state_machine(moto_endpoint, "DataFlow")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "new.jsonl").write_text(jsonl("asthma again"))
    result = process_inbox(inbox, StepFunctionsBackend(endpoint_url=moto_endpoint), tmp_path / "log.jsonl", now=NOW)
    [execution] = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert result.decisions[-1]["target"] == execution["executionArn"]
    sent = json.loads(json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])["Parameters"])
    assert sent == {"extra-annotations": str((inbox / "accepted" / "new.jsonl").resolve())}
