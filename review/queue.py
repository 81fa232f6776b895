"""Filling the review queue and choosing the next note: least certain first, with a share of random notes.

A note's confidence is the served model's: 1 - the largest D/T probability on a word it tagged O
(``medner.inference.DecodedNote.uncertainty``), so a note where the model nearly tagged a disease it then left out
comes early, though it has no entity to doubt. From a server whose model does not send it, the extraction's
lowest entity ``score`` stands in (1.0 without entities). Each
imported note is drawn into the **random** sample with probability ``random_share``, by its content hash (so
the draw does not depend on import order or on the model); the queue then hands out random notes at that
rate and otherwise the least certain **queue** note. Precision and recall are estimated from the random
notes only (:func:`review.service.quality_by_version`): the least-certain ones are the model's worst.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from medner.config import DEFAULT_RANDOM_SHARE
from medner.database import naive_utcnow
from medner.inference import TaggedNote
from review.store import (
    QUEUE,
    QUEUED,
    RANDOM,
    REVIEWED,
    SKIPPED,
    Extraction,
    Note,
    Review,
    Reviewer,
    audit,
    text_sha256,
)


def in_random_sample(sha256: str, random_share: float) -> bool:
    """Whether a note (by its text's SHA-256) is in the uniform random sample of share ``random_share``."""
    return int(sha256[:8], 16) / 0x1_0000_0000 < random_share


def note_confidence(entities: Sequence[dict[str, Any]], uncertainty: float | None = None) -> float:
    """1 - the model's ``uncertainty`` of the note; without one, the lowest entity score (1.0 without entities)."""
    if uncertainty is not None:
        return 1.0 - uncertainty
    return min((float(e["score"]) for e in entities), default=1.0)


@dataclass
class ImportResult:
    imported: int = 0
    duplicates: int = 0  # already in the store (same text), or twice in this import
    failed: dict[str, str] = field(default_factory=dict)  # source -> the model's error for that note (no text)


def _stored(session: Session, digests: Sequence[str]) -> set[str]:
    """Which of these text hashes the store has."""
    return set(session.scalars(select(Note.sha256).where(Note.sha256.in_(set(digests)))))


def new_notes(session: Session, notes: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """The notes not stored yet (so they are not sent to the model again), and how many were."""
    digests = [text_sha256(text) for _, text in notes]
    known = _stored(session, digests)
    fresh = [note for note, digest in zip(notes, digests) if digest not in known]
    return fresh, len(notes) - len(fresh)


def add_notes(session: Session, notes: Sequence[tuple[str, str]], extractions: Sequence[Any], *, model: str,
              model_version: int | None, random_share: float = DEFAULT_RANDOM_SHARE, actor: str = "cli",
              group: str | None = None) -> ImportResult:
    """Queue ``(source, text)`` notes with their extractions (a ``medner.inference.TaggedNote``, a list of
    entities, or the exception the model raised for that note: recorded under ``failed``, not queued). A note
    already stored is not added again. ``group``: the notes' group (quality by group)."""
    if not 0 <= random_share <= 1:
        raise ValueError(f"random share must be in [0, 1], got {random_share}")
    result = ImportResult()
    digests = [text_sha256(text) for _, text in notes]
    known = _stored(session, digests)
    now = naive_utcnow()
    for (source, text), digest, extraction in zip(notes, digests, extractions):
        if isinstance(extraction, BaseException):
            result.failed[source] = str(extraction)
            continue
        entities, uncertainty = extraction if isinstance(extraction, TaggedNote) else (extraction, None)
        if digest in known:
            result.duplicates += 1
            continue
        known.add(digest)
        spans = [{"start": e["start"], "end": e["end"], "label": e["label"], "score": e["score"]} for e in entities]
        note = Note(sha256=digest, text=text, source=source[:500], note_group=group, imported_at=now,
                    sample=RANDOM if in_random_sample(digest, random_share) else QUEUE,
                    confidence=note_confidence(spans, uncertainty), status=QUEUED, revision=0)
        session.add(note)
        session.flush()
        session.add(Extraction(note_id=note.id, model=model, model_version=model_version, entities=spans,
                               created_at=now))
        result.imported += 1
    audit(session, actor, "import", model=model, model_version=model_version, imported=result.imported,
          duplicates=result.duplicates, failed=len(result.failed))
    return result


def next_note(session: Session, reviewer_id: int, random_share: float = DEFAULT_RANDOM_SHARE) -> Note | None:
    """The note ``reviewer_id`` should review next: a random-sample note while fewer than ``random_share`` of
    the reviewed notes are random ones, else the least certain queue note (the other pool when one is empty).
    Notes this reviewer skipped, and redacted notes, are not offered."""
    reviewed, random_reviewed = session.execute(
        select(func.count(), func.count().filter(Note.sample == RANDOM)).where(Note.status == REVIEWED)).one()
    skipped = exists().where(Review.note_id == Note.id, Review.reviewer_id == reviewer_id,
                             Review.decision == SKIPPED)
    open_notes = select(Note).where(Note.status == QUEUED, Note.text.is_not(None), ~skipped)
    pools = [open_notes.where(Note.sample == RANDOM).order_by(Note.sha256),
             open_notes.where(Note.sample == QUEUE).order_by(Note.confidence, Note.id)]
    if random_reviewed >= random_share * (reviewed + 1):
        pools.reverse()
    for pool in pools:
        note = session.scalars(pool.limit(1)).first()
        if note is not None:
            return note
    return None


def latest_extraction(session: Session, note_id: int) -> Extraction:
    return session.scalars(select(Extraction).where(Extraction.note_id == note_id)
                           .order_by(Extraction.id.desc()).limit(1)).one()


def progress(session: Session) -> dict[str, Any]:
    """Reviewed and queued counts, and each reviewer's count of reviews (skips excluded)."""
    counts = dict(session.execute(select(Note.status, func.count()).group_by(Note.status)).all())
    per_reviewer = dict(session.execute(
        select(Reviewer.name, func.count(Review.id)).join(Review, Review.reviewer_id == Reviewer.id)
        .where(Review.decision != SKIPPED).group_by(Reviewer.name).order_by(Reviewer.name)).all())
    reviewed = counts.get(REVIEWED, 0)
    return {"reviewed": reviewed, "queued": counts.get(QUEUED, 0), "total": reviewed + counts.get(QUEUED, 0),
            "reviewers": per_reviewer}
