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
from medner.spans import predicted_labels
from monitoring.quality import check_quality
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


def test_quality_is_scored_against_the_annotation(exported_repository: Path, tiny_corpus: Path,
                                                  tmp_path: Path) -> None:
    from clients.local import LocalNerModel
    from medner.data import Sentence, write_behealthy

    sentences = read_behealthy(tiny_corpus)["test"]
    predicted = predicted_labels([s.tokens for s in sentences], LocalNerModel(exported_repository).extract)
    assert any(label != "O" for labels in predicted for label in labels)  # the (untrained) model tags something
    swap = {"D": "T", "T": "D", "O": "O"}
    write_behealthy([Sentence(s.tokens, tuple(p)) for s, p in zip(sentences, predicted)], tmp_path, "agrees")
    write_behealthy([Sentence(s.tokens, tuple(swap[x] for x in p)) for s, p in zip(sentences, predicted)],
                    tmp_path, "swapped")
    (tmp_path / "repo").mkdir()
    repository = repository_with_champion_f1(exported_repository, tmp_path / "repo", 0.9)
    # annotators who agree with every prediction: F1 1, above the champion's 0.9, no alarm
    agrees = check_quality([tmp_path / "agrees_sent"], repository, min_sentences=1)
    assert agrees["version"] == 1 and agrees["sentences"] == 20 and agrees["champion_entity_f1"] == 0.9
    assert agrees["entity_f1"] == 1.0 and agrees["level"] == "none"
    # the same spans with the other type: every entity wrong, F1 0, a drop of 0.9: critical
    swapped = check_quality([tmp_path / "swapped_sent"], repository, min_sentences=1)
    assert swapped["entity_f1"] == 0.0 and swapped["drop"] == 0.9 and swapped["level"] == "critical"
    too_few = check_quality([tmp_path / "swapped_sent"], repository)  # 20 sentences: below the default 300
    assert too_few["too_few"] and too_few["level"] == "none"


def test_live_server_and_in_process_agree(triton_server, exported_repository: Path, tiny_corpus: Path) -> None:
    from clients.local import LocalNerModel
    from clients.ner_client import NerClient

    sentences = read_behealthy(tiny_corpus)["test"]
    with NerClient(triton_server.grpc_url) as client:
        served = predicted_labels([s.tokens for s in sentences], client.extract)
    assert served == predicted_labels([s.tokens for s in sentences], LocalNerModel(exported_repository).extract)


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


def reviewed_store(url: str, version: int, notes: int, agree: int) -> None:
    """A review store where ``notes`` random-share notes of model ``version`` were reviewed: in ``agree`` of
    them the reviewer kept the model's one entity, in the others they changed its type."""
    from review.queue import add_notes, next_note
    from review.service import add_reviewer, reviewer_for_token, submit_review
    from review.store import Store

    store = Store(url)
    texts = [f"Patient {k} had asthma ." for k in range(notes)]
    with store.session() as session:
        add_notes(session, [(f"s:{k}", t) for k, t in enumerate(texts)],
                  [[{"start": t.index("asthma"), "end": t.index("asthma") + 6, "label": "D", "score": 0.5}]
                   for t in texts], model="ner", model_version=version, random_share=1.0)
        token = add_reviewer(session, "ann")
    for _ in range(notes):
        with store.session() as session:
            note = next_note(session, reviewer_for_token(session, token).id, 1.0)
            begin = note.text.index("asthma")
            label = "D" if int(note.text.split()[1]) < agree else "T"
            submit_review(session, note.id, reviewer_for_token(session, token), note.revision,
                          [{"start": begin, "end": begin + 6, "label": label, "text": "asthma"}])
    store.close()


def test_quality_from_reviews_counts_the_champion_on_random_notes(exported_repository: Path, tmp_path: Path) -> None:
    from monitoring.quality import review_quality

    (tmp_path / "repo").mkdir()
    repository = repository_with_champion_f1(exported_repository, tmp_path / "repo", 0.9)
    url = f"sqlite:///{tmp_path / 'review.db'}"
    reviewed_store(url, version=1, notes=10, agree=6)  # 6 of 10 entities right: P = R = F1 = 0.6
    report = review_quality(url, repository, min_sentences=10)
    assert (report["sentences"], report["entity_f1"], report["precision"], report["recall"]) == (10, 0.6, 0.6, 0.6)
    assert report["level"] == "critical" and report["drop"] == 0.3 and report["source"] == "reviews"
    assert review_quality(url, repository, min_sentences=11)["too_few"]
    result = runner.invoke(app, ["monitor", "quality", "--reviews", url, "--repository", str(repository),
                                 "--min-sentences", "5", "--max-drop", "0.4"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["level"] == "none"  # a drop of 0.3 is within 0.4
    both = runner.invoke(app, ["monitor", "quality", str(tmp_path / "x.jsonl"), "--reviews", url, "--repository",
                               str(repository)])
    assert both.exit_code == 1 and "one of the two" in both.stderr
