"""`medner review import`, `add-reviewer`, `export` and `redact` as a user runs them, on a real exported model
(in-process) and a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from clients.local import LocalNerModel
from medner.cli import app
from medner.data import read_annotations
from review.store import Extraction, Note, Reviewer, Store

runner = CliRunner()


def test_import_tags_and_queues_each_note_once(exported_repository: Path, tmp_path: Path) -> None:
    notes = tmp_path / "ward.txt"
    notes.write_text("Patients with asthma were treated with steroids .\n\nMetformin for type 2 diabetes .\n")
    db = f"sqlite:///{tmp_path / 'review.db'}"
    first = runner.invoke(app, ["review", "import", str(notes), "--local", str(exported_repository), "--db", db])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"imported": 2, "duplicates": 0, "failed": {}}
    again = runner.invoke(app, ["review", "import", str(notes), "--local", str(exported_repository), "--db", db])
    assert json.loads(again.stdout) == {"imported": 0, "duplicates": 2, "failed": {}}
    store = Store(db)
    with store.session() as session:
        stored = session.scalars(select(Note).order_by(Note.id)).all()
        extractions = session.scalars(select(Extraction)).all()
    store.close()
    assert [n.source for n in stored] == [f"{notes}:1", f"{notes}:3"]
    assert {e.model_version for e in extractions} == {1}  # the repository's champion
    served = LocalNerModel(exported_repository).extract([note.text for note in stored], with_uncertainty=True)
    for note, extraction, tagged in zip(stored, extractions, served):
        assert note.confidence == pytest.approx(1 - tagged.uncertainty)  # the likeliest name left O
        assert all(set(e) == {"start", "end", "label", "score"} for e in extraction.entities)  # no text copies


def test_a_note_the_model_refuses_fails_alone(exported_repository: Path, tmp_path: Path) -> None:
    notes = tmp_path / "ward.txt"
    notes.write_bytes(b"Asthma was treated .\n" + b"x" * 200_000 + b"\n")  # the second is over max_note_chars
    db = f"sqlite:///{tmp_path / 'review.db'}"
    result = runner.invoke(app, ["review", "import", str(notes), "--local", str(exported_repository), "--db", db])
    assert result.exit_code == 1 and "1 notes failed" in result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == 1 and list(report["failed"]) == [f"{notes}:2"]
    assert "xxxx" not in result.output


def test_reviewer_tokens_are_shown_once_and_stored_hashed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'review.db'}"
    token = runner.invoke(app, ["review", "add-reviewer", "ann", "--db", db]).stdout.strip()
    assert len(token) >= 32
    twice = runner.invoke(app, ["review", "add-reviewer", "ann", "--db", db])
    assert twice.exit_code == 1 and "exists already" in twice.stderr
    store = Store(db)
    with store.session() as session:
        [reviewer] = session.scalars(select(Reviewer)).all()
    store.close()
    assert token not in reviewer.token_sha256 and len(reviewer.token_sha256) == 64


def test_a_revoked_reviewer_s_token_no_longer_signs_in(tmp_path: Path) -> None:
    from review.service import reviewer_for_token

    db = f"sqlite:///{tmp_path / 'review.db'}"
    token = runner.invoke(app, ["review", "add-reviewer", "ann", "--db", db]).stdout.strip()
    revoked = runner.invoke(app, ["review", "revoke-reviewer", "ann", "--db", db])
    assert revoked.exit_code == 0 and "revoked ann" in revoked.stdout, revoked.output
    unknown = runner.invoke(app, ["review", "revoke-reviewer", "bob", "--db", db])
    assert unknown.exit_code == 1 and "no reviewer 'bob'" in unknown.stderr
    store = Store(db)
    with store.session() as session:
        assert reviewer_for_token(session, token) is None
        [reviewer] = session.scalars(select(Reviewer)).all()
        assert reviewer.session_generation == 1  # the sessions they held end too (tests/review/test_app.py)
    store.close()


def test_export_and_redact_from_the_command_line(tmp_path: Path) -> None:
    from review.queue import add_notes, next_note
    from review.service import add_reviewer, reviewer_for_token, submit_review

    db = f"sqlite:///{tmp_path / 'review.db'}"
    store = Store(db)
    text = "Asthma was treated with steroids ."
    with store.session() as session:
        add_notes(session, [("a:1", text)], [[]], model="ner", model_version=1)
        add_notes(session, [("a:2", "Gout ward note .")], [[]], model="ner", model_version=1)  # never reviewed
        token = add_reviewer(session, "ann")
    with store.session() as session:
        ann = reviewer_for_token(session, token)
        note = next_note(session, ann.id)
        submit_review(session, note.id, ann, note.revision, [{"start": 0, "end": 6, "label": "D", "text": "Asthma"}])
    store.close()
    exported = runner.invoke(app, ["review", "export", "--out", str(tmp_path / "inbox"), "--db", db])
    assert exported.exit_code == 0, exported.output
    path = Path(json.loads(exported.stdout)["file"])
    assert [s.labels for s in read_annotations(path)] == [("D", "O", "O", "O", "O", "O")]
    kept = runner.invoke(app, ["review", "redact", "--older-than-days", "1", "--db", db])
    assert json.loads(kept.stdout) == {"redacted": 0}  # exported just now: kept
    gone = runner.invoke(app, ["review", "redact", "--older-than-days", "0", "--db", db])
    assert json.loads(gone.stdout) == {"redacted": 1}  # the exported note; the unreviewed one keeps its text
    assert runner.invoke(app, ["review", "redact", "--db", db]).exit_code == 2  # how old a note may get: required
    ceiling = runner.invoke(app, ["review", "redact", "--max-age-days", "0", "--db", db])
    assert json.loads(ceiling.stdout) == {"redacted": 1}  # every note, exported or not


def test_import_through_triton_stores_what_in_process_import_stores(triton_server, exported_repository: Path,
                                                                     tmp_path: Path) -> None:
    notes = tmp_path / "ward.txt"
    notes.write_text("Patients with asthma were treated with steroids .\nMetformin for type 2 diabetes .\n")
    stored = []
    for name, where in (("served", ["--url", triton_server.grpc_url, "--model-version", "1"]),
                        ("local", ["--local", str(exported_repository)])):
        db = f"sqlite:///{tmp_path / name}.db"
        result = runner.invoke(app, ["review", "import", str(notes), *where, "--db", db])
        assert result.exit_code == 0, result.output
        store = Store(db)
        with store.session() as session:
            stored.append([(e.model_version, e.entities) for e in session.scalars(select(Extraction))])
        store.close()
    assert stored[0] == stored[1] and len(stored[0]) == 2


def test_a_database_that_cannot_be_opened_gets_a_clear_error(tmp_path: Path) -> None:
    for db in ("not a url", f"sqlite:///{tmp_path / 'missing' / 'folder' / 'review.db'}"):
        result = runner.invoke(app, ["review", "export", "--out", str(tmp_path), "--db", db])
        assert result.exit_code == 1 and "cannot open the review database" in result.stderr, result.output
        assert "Traceback" not in result.output
