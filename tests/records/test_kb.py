"""The disease -> treatment knowledge base on SQLite and PostgreSQL: pairs only within a sentence, names
normalised and given dictionary ids, the newest extraction of a note only, queries by name or id, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from medner.cli import app
from medner.database import naive_utcnow
from records import kb
from records.store import KbEvidence, RecordEntity, RecordNote, RecordsStore

runner = CliRunner()

NOTES = {  # note id -> entities (label, text, sentence, score); offsets are made up but distinct
    "a.txt": [("D", "Hereditary retinoblastoma (HR)", 0, 0.9), ("T", "radiotherapy", 0, 0.8),
              ("T", "enucleation", 1, 0.95)],  # another sentence: no pair with the disease
    "b.txt": [("D", "retinoblastoma", 0, 0.7), ("T", "Radiotherapy", 0, 0.6), ("T", "carboplatin", 0, 0.9)],
    "c.txt": [("D", "breast  cancer", 2, 0.99), ("T", "tamoxifen", 2, 0.97)],
}


def _fill(store: RecordsStore, notes: dict, version: int = 1) -> None:
    with store.session() as s:
        for note_id, entities in notes.items():
            note = RecordNote(source="archive", note_id=note_id, sha256="0" * 64, model="ner", model_version=version,
                              run="r", extracted_at=naive_utcnow(), entity_count=len(entities))
            s.add(note)
            s.flush()
            for i, (label, text, sentence, score) in enumerate(entities):
                s.add(RecordEntity(note=note.id, label=label, start=100 * i, end=100 * i + len(text), text=text,
                                   score=score, sentence=sentence))


def test_names_are_normalised() -> None:
    assert kb.normalise_name("  Hereditary\tretinoblastoma (HR). ") == "hereditary retinoblastoma"
    assert kb.normalise_name("Type 2 Diabetes [T2D]") == "type 2 diabetes"
    assert kb.normalise_name("(HR)") == "(hr)"  # nothing left without the brackets: kept as written
    assert kb.dictionary_id("hereditary retinoblastoma", "D") == kb.dictionary_id("retinoblastoma", "D") == "D016161"
    assert kb.dictionary_id("tamoxifen", "T") == "D050071"
    assert kb.dictionary_id("retinoblastoma eye", "D") is None  # a dictionary name inside is not the whole name


def test_pairs_within_a_sentence_queried_by_name_or_id(store_url: str) -> None:
    store = RecordsStore(store_url)
    _fill(store, NOTES)
    assert kb.build(store) == {"pairs": 4, "mentions": 4, "notes": 3}
    assert kb.build(store) == {"pairs": 4, "mentions": 4, "notes": 3}  # rebuilt, not added to

    answers = kb.query(store, "Hereditary Retinoblastoma")
    assert [(a.treatment, a.notes, a.diseases) for a in answers] == [
        ("radiotherapy", 2, ["hereditary retinoblastoma", "retinoblastoma"]),  # one MeSH id: both names match
        ("carboplatin", 1, ["retinoblastoma"])]
    assert abs(answers[0].mean_confidence - (0.8 + 0.6) / 2) < 1e-9  # the lower score of each mention
    assert [a.treatment for a in kb.query(store, "D016161")] == ["radiotherapy", "carboplatin"]
    assert [a.treatment for a in kb.query(store, "breast cancer")] == ["tamoxifen"]
    assert kb.query(store, "enucleation") == [] and kb.query(store, "asthma") == []
    assert {e["note_id"] for e in answers[0].evidence} == {"a.txt", "b.txt"}
    assert answers[0].evidence[0]["disease"] == [0, len("Hereditary retinoblastoma (HR)")]

    _fill(store, {"b.txt": [("D", "retinoblastoma", 0, 0.7), ("T", "vincristine", 0, 0.9)]}, version=2)
    kb.build(store)  # b.txt's newest extraction replaces its old one
    assert [a.treatment for a in kb.query(store, "retinoblastoma")] == ["radiotherapy", "vincristine"]
    with store.session() as s:
        assert len(s.scalars(select(KbEvidence)).all()) == 3
    store.close()


def test_the_kb_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = RecordsStore(url)
    _fill(store, NOTES)
    store.close()
    built = runner.invoke(app, ["kb", "build", "--db", url])
    assert built.exit_code == 0 and built.output.strip() == "4 disease-treatment pairs from 4 mentions in 3 notes"

    table = runner.invoke(app, ["kb", "query", "Retinoblastoma", "--top", "1", "--db", url])
    assert table.exit_code == 0
    header, row = table.output.strip().splitlines()
    assert header.split()[:2] == ["treatment", "id"] and row.split()[:4] == ["radiotherapy", "-", "2", "2"]
    lines = runner.invoke(app, ["kb", "query", "retinoblastoma", "--format", "jsonl", "--db", url]).output
    assert [json.loads(line)["treatment"] for line in lines.splitlines()] == ["radiotherapy", "carboplatin"]

    missing = runner.invoke(app, ["kb", "query", "asthma", "--db", url])
    assert missing.exit_code == 1 and "no treatment of 'asthma'" in missing.output

    out = tmp_path / "kb.csv"
    assert runner.invoke(app, ["kb", "export", "--out", str(out), "--db", url]).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["disease"], r["treatment"], r["notes"]) for r in rows][:2] == [
        ("breast cancer", "tamoxifen", "1"), ("hereditary retinoblastoma", "radiotherapy", "1")]
    assert rows[0]["disease_id"] == "D000072656"
