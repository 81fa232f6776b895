"""One shard into the records store, on SQLite and PostgreSQL: every note exactly once (entities or an error row),
nothing added when run again, re-extracted by a new model version, a failing server fails the shard without
recording its notes as bad; through Triton, the records name the version the server runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clients.ner_client import NerRequestError
from records.extract import (
    Extractor,
    champion_model,
    extract_shard,
    local_extractor,
    sentence_indexes,
    triton_extractor,
)
from records.sources import list_notes
from records.store import RecordEntity, RecordError, RecordNote, RecordsStore
from tests.conftest import synthetic_sentences

SECRET = "Mrs Example has lupus"


def _notes(folder: Path, count: int = 40) -> Path:
    folder.mkdir(parents=True)
    sentences = [" ".join(s.tokens) for s in synthetic_sentences(count * 2, seed=5)]
    for i in range(count):
        (folder / f"n{i:03}.txt").write_text(f"{sentences[2 * i]}\n{sentences[2 * i + 1]}")
    (folder / "empty.txt").write_text("  \n")
    (folder / "latin1.txt").write_bytes(f"{SECRET} caf\xe9".encode("latin-1"))
    (folder / "huge.txt").write_text((SECRET + " ") * 240_000)  # ~5 MB: over the service's note limit
    (folder / "more.jsonl").write_text(json.dumps({"id": "x1", "words": SECRET}) + "\n"
                                       + json.dumps({"id": "x2", "text": sentences[0]}) + "\n")
    return folder


def _counts(store: RecordsStore) -> tuple[int, int, int]:
    with store.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (RecordNote, RecordError, RecordEntity))


@pytest.fixture
def records(store_url: str):
    store = RecordsStore(store_url)
    yield store
    store.close()


def test_every_note_is_stored_once_with_its_entities_or_its_error(records: RecordsStore, exported_repository: Path,
                                                                    tmp_path: Path) -> None:
    folder = _notes(tmp_path / "notes")
    refs = list_notes(str(folder))
    model, version = champion_model(exported_repository)
    extractor = local_extractor(exported_repository, model, version, threads=1)
    stats = extract_shard(refs, store=records, extractor=extractor, run="test/1", batch_size=8, show_progress=False)

    assert (stats.notes, stats.extracted, stats.errors, stats.skipped) == (45, 41, 4, 0)
    notes, errors, entities = _counts(records)
    assert (notes, errors) == (41, 4) and entities == sum(stats.entities.values()) > 0
    with records.session() as s:
        reasons = dict(s.execute(select(RecordError.note_id, RecordError.error)).all())
        stored = s.scalars(select(RecordEntity).join(RecordNote, RecordNote.id == RecordEntity.note)
                           .where(RecordNote.note_id == "n000.txt")).all()
        assert {n.model_version for n in s.scalars(select(RecordNote))} == {version}
    assert reasons["empty.txt"].endswith("empty.txt: note is empty")
    assert reasons["latin1.txt"].endswith("note is not valid UTF-8 (byte 25)")
    assert "characters; the limit is" in reasons["huge.txt"]
    assert reasons["x1"].endswith('more.jsonl:1: no "text" string in this line')
    assert not any("lupus" in reason for reason in reasons.values())

    text = (folder / "n000.txt").read_text()
    assert [(e.label, e.start, e.end, e.text) for e in stored] == [
        (e["label"], e["start"], e["end"], e["text"]) for e in extractor.extract([text])[0]]
    assert all(text[e.start:e.end] == e.text for e in stored)
    assert {e.sentence for e in stored} <= {0, 1}

    again = extract_shard(refs, store=records, extractor=extractor, run="test/2", show_progress=False)
    assert (again.skipped, again.extracted, again.errors) == (45, 0, 0) and _counts(records) == (notes, 4, entities)

    newer = Extractor(model, version + 1, extractor.extract)  # a new champion reads the archive again
    assert extract_shard(refs, store=records, extractor=newer, run="test/3", show_progress=False).extracted == 41
    assert _counts(records)[:2] == (82, 8)


def test_a_server_that_cannot_answer_fails_the_shard_and_records_none_of_its_notes(records: RecordsStore,
                                                                                    tmp_path: Path) -> None:
    refs = list_notes(str(_notes(tmp_path / "notes", count=20)))
    calls = []

    def flaky(notes: list[str], group: str | None = None) -> list:
        calls.append(len(notes))
        if len(calls) == 2:  # the second batch: the server went away
            return [NerRequestError(i, "StatusCode.UNAVAILABLE", "server unavailable after 60.0s") for i in notes]
        return [[] for _ in notes]

    with pytest.raises(RuntimeError, match="the server could not tag notes of shard 0"):
        extract_shard(refs, store=records, extractor=Extractor("ner", 1, flaky), run="r", batch_size=10,
                      show_progress=False)
    assert sum(_counts(records)[:2]) == 10  # the first batch only; the others are read again on resume
    healthy = Extractor("ner", 1, lambda n, group=None: [[] for _ in n])
    resumed = extract_shard(refs, store=records, extractor=healthy, run="r2", batch_size=10, show_progress=False)
    assert (resumed.skipped, resumed.extracted + resumed.errors) == (10, 15)
    assert sum(_counts(records)[:2]) == 25


def test_sentence_indexes_follow_the_model_s_sentence_split() -> None:
    text = "Asthma was seen. Steroids helped.\nMetformin for diabetes."
    entities = [{"start": text.index(w)} for w in ("Asthma", "Steroids", "Metformin", "diabetes")]
    assert sentence_indexes(text, entities) == [0, 1, 2, 2]


@pytest.mark.slow
def test_through_triton_the_records_name_the_served_version(triton_server, exported_repository: Path,
                                                            tmp_path: Path) -> None:
    store = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    refs = list_notes(str(_notes(tmp_path / "notes", count=12)))
    extractor = triton_extractor(triton_server.grpc_url, "ner")
    try:
        stats = extract_shard(refs, store=store, extractor=extractor, run="r", show_progress=False)
    finally:
        extractor.close()
    assert (extractor.version, stats.extracted, stats.errors) == (1, 13, 4)
    with store.session() as s:
        reasons = dict(s.execute(select(RecordError.note_id, RecordError.error)).all())
    assert "characters; the limit is" in reasons["huge.txt"]
    local = local_extractor(exported_repository, "ner", 1, threads=1)
    text = (tmp_path / "notes" / "n003.txt").read_text()
    with store.session() as s:
        served = s.execute(select(RecordEntity.start, RecordEntity.end, RecordEntity.label)
                           .join(RecordNote, RecordNote.id == RecordEntity.note)
                           .where(RecordNote.note_id == "n003.txt")).all()
    assert sorted(served) == sorted((e["start"], e["end"], e["label"]) for e in local.extract([text])[0])
