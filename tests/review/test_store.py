"""The review store on SQLite and PostgreSQL: schema from migrations, import without duplicates, the
active-learning queue, reviews that never overwrite, export through the annotation reader, retention, and the
quality estimate from the random share."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from medner.data import read_annotations
from medner.database import naive_utcnow
from review.queue import add_notes, in_random_sample, next_note, progress
from review.service import (
    ReviewError,
    StaleReview,
    add_reviewer,
    export_reviews,
    quality_by_version,
    quality_totals,
    redact_notes,
    reviewer_for_token,
    skip_note,
    submit_review,
)
from review.store import RANDOM, AuditEvent, Base, Note, Review, Reviewer, Store, text_sha256

MARKER = "Zqxmarker7731"


def entity(text: str, word: str, label: str, score: float = 0.9) -> dict:
    start = text.index(word)
    return {"start": start, "end": start + len(word), "label": label, "score": score}


def final(text: str, word: str, label: str) -> dict:
    start = text.index(word)
    return {"start": start, "end": start + len(word), "label": label, "text": word}


NOTES = [
    ("n:1", "Aspirin eased the headache ."),
    ("n:2", f"{MARKER} had asthma treated with steroids ."),
    ("n:3", "No findings today ."),
]


def extractions() -> list[list[dict]]:
    return [[entity(NOTES[0][1], "Aspirin", "T", 0.95), entity(NOTES[0][1], "headache", "D", 0.91)],
            [entity(NOTES[1][1], "asthma", "D", 0.42)],
            []]


def fill(store: Store, random_share: float = 0.0) -> Reviewer:
    with store.session() as session:
        add_notes(session, NOTES, extractions(), model="ner", model_version=3, random_share=random_share)
        add_reviewer(session, "ann")
    with store.session() as session:
        return session.scalars(select(Reviewer)).one()


def test_migrations_create_exactly_the_models_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    Store(store.url).close()  # opening a migrated store again is a no-op, not an error


def test_import_twice_adds_nothing_and_failures_are_reported(store: Store) -> None:
    with store.session() as session:
        first = add_notes(session, NOTES, extractions(), model="ner", model_version=1)
    with store.session() as session:
        again = add_notes(session, NOTES[:2] + [("x:1", "Brand new note .")],
                          [[], [], ValueError("note 2: too long")], model="ner", model_version=1)
        count = len(session.scalars(select(Note)).all())
    assert (first.imported, first.duplicates) == (3, 0)
    assert (again.imported, again.duplicates, again.failed) == (0, 2, {"x:1": "note 2: too long"})
    assert count == 3


def test_queue_serves_least_certain_first_and_skips_stay_for_others(store: Store) -> None:
    ann = fill(store)
    with store.session() as session:
        bob_token = add_reviewer(session, "bob")
    with store.session() as session:
        first = next_note(session, ann.id, random_share=0.0)
        assert first.text == NOTES[1][1]  # confidence 0.42
        skip_note(session, first.id, ann)
    with store.session() as session:
        assert next_note(session, ann.id, 0.0).text == NOTES[0][1]  # 0.91, then the note without entities
        bob = reviewer_for_token(session, bob_token)
        assert next_note(session, bob.id, 0.0).id == first.id  # ann's skip is not bob's


def test_the_served_uncertainty_orders_the_queue_and_a_note_without_entities_can_come_first(store: Store) -> None:
    from medner.inference import TaggedNote

    served = [TaggedNote(extractions()[0], 0.30), TaggedNote(extractions()[1], 0.58),
              TaggedNote([], 0.71)]  # no entity, but a word the model nearly tagged: the least certain note
    with store.session() as session:
        add_notes(session, NOTES, served, model="ner", model_version=3, random_share=0.0)
        ann = reviewer_for_token(session, add_reviewer(session, "ann"))
        assert [n.confidence for n in session.scalars(select(Note).order_by(Note.id))] == pytest.approx(
            [0.70, 0.42, 0.29])
        order = []
        for _ in NOTES:
            note = next_note(session, ann.id, 0.0)
            order.append(note.text)
            skip_note(session, note.id, ann)
    assert order == [NOTES[2][1], NOTES[1][1], NOTES[0][1]]


def test_random_share_is_drawn_by_content_and_served_at_its_rate(store: Store) -> None:
    texts = [(f"r:{k}", f"Note number {k} mentions asthma .") for k in range(40)]
    with store.session() as session:
        add_notes(session, texts, [[] for _ in texts], model="ner", model_version=1, random_share=0.5)
        add_reviewer(session, "ann")
    with store.session() as session:
        ann = session.scalars(select(Reviewer)).one()
        samples = {n.text: n.sample for n in session.scalars(select(Note))}
    assert {t: s == RANDOM for t, s in samples.items()} == {t: in_random_sample(text_sha256(t), 0.5)
                                                             for _, t in texts}
    served = []
    for _ in range(10):
        with store.session() as session:
            note = next_note(session, ann.id, random_share=0.5)
            served.append(note.sample)
            submit_review(session, note.id, ann, note.revision, [])
    assert served.count(RANDOM) == 5 and served[0] == RANDOM


def test_review_validation_names_offsets_never_text(store: Store) -> None:
    ann = fill(store)
    text = NOTES[1][1]
    bad = {
        "offsets beyond the note": [{"start": 0, "end": 999, "label": "D", "text": "x"}],
        "unknown label": [{**final(text, "asthma", "D"), "label": "X"}],
        "text not what offsets slice": [{**final(text, "asthma", "D"), "text": "asthmx"}],
        "cuts a word": [{"start": text.index("asthma"), "end": text.index("asthma") + 3, "label": "D",
                         "text": "ast"}],
        "overlap": [final(text, "asthma", "D"), {**final(text, "asthma treated", "D")}],
    }
    with store.session() as session:
        note = session.scalars(select(Note).where(Note.text == text)).one()
    for why, entities in bad.items():
        with store.session() as session, pytest.raises(ReviewError) as err:
            submit_review(session, note.id, ann, note.revision, entities)
        assert MARKER not in str(err.value) and "asthma" not in str(err.value), why
    with store.session() as session:
        assert session.get(Note, note.id).status == "queued"  # nothing was saved


def test_stale_review_changes_nothing(store: Store) -> None:
    ann = fill(store)
    with store.session() as session:
        bob = reviewer_for_token(session, add_reviewer(session, "bob"))
    text = NOTES[0][1]
    with store.session() as session:
        note = session.scalars(select(Note).where(Note.text == text)).one()
        shown_revision = note.revision
        submit_review(session, note.id, ann, shown_revision, [final(text, "Aspirin", "T")])
    with store.session() as session, pytest.raises(StaleReview, match="already reviewed by ann"):
        submit_review(session, note.id, bob, shown_revision, [])
    with store.session() as session:
        reviews = session.execute(select(Note.revision)).scalars().all()
        saved = [r.entities for r in session.scalars(select(Review))]
    assert sorted(reviews) == [0, 0, 1]
    assert saved == [[{"start": 0, "end": 7, "label": "T"}]]


def test_export_reads_back_as_annotations_and_quality_counts_the_random_share(store: Store, tmp_path: Path) -> None:
    ann = fill(store, random_share=1.0)  # every note in the random sample
    reviewed = {
        NOTES[0][1]: [final(NOTES[0][1], "Aspirin", "T"), final(NOTES[0][1], "headache", "D")],  # accepted
        NOTES[1][1]: [final(NOTES[1][1], "asthma", "D"), final(NOTES[1][1], "steroids", "T")],  # one added
        NOTES[2][1]: [final(NOTES[2][1], "findings", "D")],  # one added (missed by the model)
    }
    decisions = []
    for _ in reviewed:
        with store.session() as session:
            note = next_note(session, ann.id, 1.0)
            decisions.append(submit_review(session, note.id, ann, note.revision, reviewed[note.text]).decision)
    assert sorted(decisions) == ["accepted", "corrected", "corrected"]
    with store.session() as session:
        path, count = export_reviews(session, tmp_path / "inbox")
        assert export_reviews(session, tmp_path / "inbox") == (None, 0)  # each note is exported once
        rows = quality_by_version(session)
        assert quality_totals(quality_by_version(session, sample="queue"))["notes"] == 0
        assert progress(session) == {"reviewed": 3, "queued": 0, "total": 3, "reviewers": {"ann": 3}}
    assert count == 3 and len(read_annotations(path)) == 3
    written = {r["text"]: r["entities"] for r in map(json.loads, path.read_text().splitlines())}
    assert written == {t: [{k: e[k] for k in ("start", "end", "label")} for e in spans]
                       for t, spans in reviewed.items()}
    totals = quality_totals(rows, model_version=3)
    assert (totals["tp"], totals["fp"], totals["fn"]) == (3, 0, 2)
    assert totals["precision"] == 1.0 and totals["recall"] == pytest.approx(0.6)


def test_redaction_after_retention_and_an_audit_log_without_text(store: Store, tmp_path: Path) -> None:
    ann = fill(store)
    with store.session() as session:
        note = next_note(session, ann.id, 0.0)
        submit_review(session, note.id, ann, note.revision, [final(note.text, "asthma", "D")])
        export_reviews(session, tmp_path, now=naive_utcnow() - timedelta(days=40))
    with store.session() as session:
        assert redact_notes(session, exported_days=30) == 1
        assert redact_notes(session, exported_days=30) == 0
        redacted = session.get(Note, note.id)
        assert redacted.text is None and redacted.sha256 == text_sha256(NOTES[1][1])
        assert next_note(session, ann.id, 0.0).id != note.id
        audit = [json.dumps([e.actor, e.action, e.detail]) for e in session.scalars(select(AuditEvent))]
    assert [json.loads(a)[1] for a in audit] == ["import", "add-reviewer", "review", "export", "redact", "redact"]
    assert not any(MARKER in a or "asthma" in a for a in audit)


def test_quality_by_group_counts_each_group_s_random_share(store: Store) -> None:
    from review.service import quality_by_group

    with store.session() as session:
        add_notes(session, [("a:1", "Asthma was treated.")], [[{"start": 0, "end": 6, "label": "D", "score": 0.9}]],
                  model="ner", model_version=1, random_share=1.0, group="clinic_a")
        add_notes(session, [("b:1", "Gout was treated.")], [[{"start": 0, "end": 4, "label": "D", "score": 0.9}]],
                  model="ner", model_version=1, random_share=1.0, group="clinic_b")
        add_notes(session, [("c:1", "No group here.")], [[]], model="ner", model_version=1, random_share=1.0)
    finals = {"clinic_a": [{"start": 0, "end": 6, "label": "D", "text": "Asthma"}],
              "clinic_b": [{"start": 9, "end": 16, "label": "T", "text": "treated"}], None: []}
    with store.session() as session:
        reviewer = reviewer_for_token(session, add_reviewer(session, "ann"))
        for note in session.scalars(select(Note).order_by(Note.id)).all():
            submit_review(session, note.id, reviewer, note.revision, finals[note.note_group])
    with store.session() as session:
        rows = {r["group"]: r for r in quality_by_group(session)}
        assert {g: (r["notes"], r["entity_f1"]) for g, r in rows.items()} == {
            "clinic_a": (1, 1.0), "clinic_b": (1, 0.0)}  # clinic_b: its one entity was wrong
        assert quality_by_group(session, model_version=2) == []


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from records.store import RecordsStore

    for store in (Store(f"sqlite:///{tmp_path / 'review.db'}"), RecordsStore(f"sqlite:///{tmp_path / 'r.db'}")):
        store.close()
    assert {oct((tmp_path / name).stat().st_mode & 0o777) for name in ("review.db", "r.db")} == {"0o600"}


def test_a_retention_ceiling_redacts_every_old_note_exported_or_not(store: Store) -> None:
    fill(store)
    with store.session() as session:
        old, recent = session.scalars(select(Note).order_by(Note.id)).all()[:2]
        old.imported_at = naive_utcnow() - timedelta(days=400)  # never reviewed, never exported
        old_id, recent_id = old.id, recent.id
    with store.session() as session:
        assert redact_notes(session, exported_days=30, max_age_days=365) == 1
        assert session.get(Note, old_id).text is None and session.get(Note, recent_id).text is not None
        with pytest.raises(ValueError, match="how old"):
            redact_notes(session)
