"""What reviewers and operators do with the store: sign-in tokens, reviews (validated, never overwriting
another reviewer's), export as annotation JSONL, retention, and the model's precision and recall measured
against reviewers' final spans. Errors name notes by id and entities by offsets, never by their text."""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from medner.data import parse_annotation, read_jsonl
from medner.database import naive_utcnow
from review.queue import latest_extraction
from review.store import (
    ACCEPTED,
    CORRECTED,
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


class ReviewError(ValueError):
    """A review that cannot be taken as sent (bad spans, unknown note); nothing was changed."""


class StaleReview(ReviewError):
    """The note was reviewed by someone else since the form was shown; nothing was changed."""


# --- reviewers -------------------------------------------------------------------------------------

def add_reviewer(session: Session, name: str, actor: str = "cli") -> str:
    """Create reviewer ``name`` and return their sign-in token: shown once, stored only as its SHA-256."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ReviewError("a reviewer name needs 1 to 100 characters")
    if session.scalars(select(Reviewer).where(Reviewer.name == name)).first():
        raise ReviewError(f"reviewer {name!r} exists already")
    token = secrets.token_urlsafe(24)
    session.add(Reviewer(name=name, token_sha256=text_sha256(token), created_at=naive_utcnow()))
    audit(session, actor, "add-reviewer", reviewer=name)
    return token


def reviewer_for_token(session: Session, token: str) -> Reviewer | None:
    """The reviewer whose token this is (tokens are random, so looking up their hash leaks nothing)."""
    return session.scalars(select(Reviewer).where(Reviewer.token_sha256 == text_sha256(token))).first() if token \
        else None


def end_sessions(session: Session, reviewer: Reviewer) -> None:
    """End every web session ``reviewer`` holds (signing out, revocation): their session generation moves on, so
    each cookie signed with the old one, copies included, is signed out at its next request."""
    session.execute(update(Reviewer).where(Reviewer.id == reviewer.id)
                    .values(session_generation=Reviewer.session_generation + 1))


def revoke_reviewer(session: Session, name: str, actor: str = "cli") -> None:
    """Revoke reviewer ``name``: their token no longer signs in or calls the API and every session they hold ends
    at its next request; their past reviews stay attributed to them."""
    reviewer = session.scalars(select(Reviewer).where(Reviewer.name == name.strip())).first()
    if reviewer is None:
        raise ReviewError(f"no reviewer {name.strip()!r}")
    reviewer.token_sha256 = "revoked-" + secrets.token_hex(28)  # 64 characters; never a SHA-256 (hex digits only)
    end_sessions(session, reviewer)
    audit(session, actor, "revoke-reviewer", reviewer=reviewer.name)


# --- reviews ---------------------------------------------------------------------------------------

def validate_entities(text: str, entities: Any) -> list[dict[str, Any]]:
    """Final spans as ``{start, end, label}``, sorted: checked by the annotation reader's rules (offsets within
    the note, a known label, word boundaries, no overlaps: :func:`medner.data.parse_annotation`), and each sent
    entity must carry the ``text`` its offsets slice from the stored note, so a page showing stale or shifted text
    cannot save wrong offsets."""

    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise ReviewError("entities must be a list of objects")
    try:
        parse_annotation({"text": text, "entities": entities})
    except ValueError as err:
        raise ReviewError(str(err)) from None
    for k, entity in enumerate(entities):
        start, end = entity["start"], entity["end"]
        if entity.get("text") != text[start:end]:
            raise ReviewError(f"entity {k} [{start}, {end}): its text is not what these offsets slice from the "
                              "note (reload the note)")
    return sorted(({"start": e["start"], "end": e["end"], "label": e["label"]} for e in entities),
                  key=lambda s: s["start"])


def span_keys(entities: Iterable[dict[str, Any]]) -> set[tuple[int, int, str]]:
    return {(e["start"], e["end"], e["label"]) for e in entities}


def _stale_message(session: Session, note: Note) -> str:
    last = session.execute(select(Reviewer.name, Review.created_at).join(Review, Review.reviewer_id == Reviewer.id)
                           .where(Review.note_id == note.id, Review.decision != SKIPPED)
                           .order_by(Review.id.desc()).limit(1)).first()
    who = f" by {last[0]} at {last[1]:%Y-%m-%d %H:%M} UTC" if last else ""
    return f"note {note.id} was already reviewed{who}; your changes were not saved"


def submit_review(session: Session, note_id: int, reviewer: Reviewer, revision: int,
                  entities: Sequence[Any]) -> Review:
    """Save ``reviewer``'s final spans for a note shown at ``revision``. Raises :class:`StaleReview` when it
    has been reviewed since (nothing is overwritten) and :class:`ReviewError` for spans that do not fit."""
    note = session.get(Note, note_id)
    if note is None or note.text is None:
        raise ReviewError(f"no note {note_id} to review")
    if note.status != QUEUED or note.revision != revision:
        raise StaleReview(_stale_message(session, note))
    spans = validate_entities(note.text, entities)
    extraction = latest_extraction(session, note.id)
    predicted, final = span_keys(extraction.entities), span_keys(spans)
    decision = ACCEPTED if final == predicted else CORRECTED
    # the conditional update is the lock: of two reviewers submitting at once, one changes a row
    changed = session.execute(update(Note).where(Note.id == note.id, Note.revision == revision,
                                                 Note.status == QUEUED)
                              .values(status=REVIEWED, revision=revision + 1)).rowcount
    if changed != 1:
        session.rollback()
        raise StaleReview(_stale_message(session, note))
    review = Review(note_id=note.id, extraction_id=extraction.id, reviewer_id=reviewer.id, decision=decision,
                    entities=spans, created_at=naive_utcnow())
    session.add(review)
    audit(session, reviewer.name, "review", note.id, decision=decision,
          removed=sorted(predicted - final), added=sorted(final - predicted))
    return review


def skip_note(session: Session, note_id: int, reviewer: Reviewer) -> None:
    """``reviewer`` passes on a note: it stays queued for others."""
    note = session.get(Note, note_id)
    if note is None:
        raise ReviewError(f"no note {note_id}")
    session.add(Review(note_id=note.id, extraction_id=latest_extraction(session, note.id).id,
                       reviewer_id=reviewer.id, decision=SKIPPED, entities=None, created_at=naive_utcnow()))
    audit(session, reviewer.name, "skip", note.id)


def final_reviews(session: Session, since: datetime | None = None
                  ) -> list[tuple[Note, Review, Extraction]]:
    """Each reviewed note with its (one) review and the extraction that was reviewed, oldest review first."""
    query = (select(Note, Review, Extraction).join(Review, Review.note_id == Note.id)
             .join(Extraction, Extraction.id == Review.extraction_id)
             .where(Note.status == REVIEWED, Review.decision != SKIPPED).order_by(Review.created_at, Review.id))
    if since is not None:
        query = query.where(Review.created_at >= since)
    return [tuple(row) for row in session.execute(query).all()]


# --- export and retention --------------------------------------------------------------------------

def export_reviews(session: Session, out_dir: Path, since: datetime | None = None, actor: str = "cli",
                   now: datetime | None = None) -> tuple[Path | None, int]:
    """Write reviewed notes as annotation JSONL (``reviews-<time>.jsonl`` in ``out_dir``, e.g. the monitoring
    inbox): those reviewed since ``since``, else those not exported yet. The file is read back with the
    project's annotation reader before it is moved into place. Returns the file (None: nothing to export)
    and the number of notes."""

    now = now or naive_utcnow()
    rows = [(note, review) for note, review, _ in final_reviews(session, since)
            if note.text is not None and (since is not None or note.exported_at is None)]
    if not rows:
        return None, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"reviews-{now:%Y%m%dT%H%M%S}.jsonl"
    partial = out_dir / f".{path.name}.partial"  # hidden: the inbox ignores it until it is complete
    with partial.open("w", encoding="utf-8") as out:
        for note, review in rows:
            out.write(json.dumps({"text": note.text, "entities": review.entities}, ensure_ascii=False) + "\n")
    read_jsonl(partial)
    partial.replace(path)
    for note, _ in rows:
        note.exported_at = now
    audit(session, actor, "export", file=path.name, notes=len(rows))
    return path, len(rows)


def redact_notes(session: Session, *, exported_days: float | None = None, max_age_days: float | None = None,
                 actor: str = "cli", now: datetime | None = None) -> int:
    """Retention: drop the text of notes exported more than ``exported_days`` ago and of every note imported more
    than ``max_age_days`` ago, exported or not, reviewed or not (their spans, hashes and reviews stay for the
    quality record). Returns how many notes were redacted."""
    if exported_days is None and max_age_days is None:
        raise ValueError("say how old a note may get: exported_days, max_age_days or both")
    now = now or naive_utcnow()
    due = []
    if exported_days is not None:
        due.append(Note.exported_at.is_not(None) & (Note.exported_at < now - timedelta(days=exported_days)))
    if max_age_days is not None:
        due.append(Note.imported_at < now - timedelta(days=max_age_days))
    notes = session.scalars(select(Note).where(Note.text.is_not(None), or_(*due))).all()
    for note in notes:
        note.text, note.redacted_at = None, now
    audit(session, actor, "redact", notes=len(notes), exported_days=exported_days, max_age_days=max_age_days)
    return len(notes)


# --- model quality from reviews --------------------------------------------------------------------

def agreement(predicted: Iterable[dict[str, Any]], final: Iterable[dict[str, Any]]) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of one extraction against a review (exact spans)."""
    predicted, final = span_keys(predicted), span_keys(final)
    return len(predicted & final), len(predicted - final), len(final - predicted)


def scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall) if precision and recall else
          (0.0 if precision is not None and recall is not None else None))
    return {"precision": precision, "recall": recall, "entity_f1": f1}


def week_of(moment: datetime) -> str:
    """The Monday that starts ``moment``'s ISO week, ``YYYY-MM-DD``."""
    return (moment - timedelta(days=moment.weekday())).strftime("%Y-%m-%d")


def quality_by_version(session: Session, since: datetime | None = None, sample: str | None = RANDOM
                       ) -> list[dict[str, Any]]:
    """Precision, recall and entity F1 of each model version against reviewers' final spans, per week of
    review; ``sample`` RANDOM (the default) counts only the random share, the unbiased estimate; None
    counts every reviewed note. Also the model's errors (spurious + missed spans) per reviewed note."""
    counts: dict[tuple[str, int | None, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for note, review, extraction in final_reviews(session, since):
        if sample is not None and note.sample != sample:
            continue
        row = counts[(extraction.model, extraction.model_version, week_of(review.created_at))]
        for k, value in enumerate(agreement(extraction.entities, review.entities)):
            row[k] += value
        row[3] += 1
    return [{"model": model, "model_version": version, "week": week, "notes": n, "tp": tp, "fp": fp, "fn": fn,
             "errors_per_note": round((fp + fn) / n, 4),
             **{k: (round(v, 4) if v is not None else None) for k, v in scores(tp, fp, fn).items()}}
            for (model, version, week), (tp, fp, fn, n) in sorted(counts.items(),
                                                                  key=lambda kv: (kv[0][2], str(kv[0])))]


def quality_by_group(session: Session, model_version: int | None = None, sample: str | None = RANDOM
                     ) -> list[dict[str, Any]]:
    """:func:`quality_by_version`'s scores per group of notes (notes imported without one are left out), for one
    model version when given, added up over time."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for note, review, extraction in final_reviews(session):
        if note.note_group is None or (sample is not None and note.sample != sample):
            continue
        if model_version is not None and extraction.model_version != model_version:
            continue
        row = counts[note.note_group]
        for k, value in enumerate(agreement(extraction.entities, review.entities)):
            row[k] += value
        row[3] += 1
    return [{"group": group, "notes": n, "tp": tp, "fp": fp, "fn": fn,
             **{k: (round(v, 4) if v is not None else None) for k, v in scores(tp, fp, fn).items()}}
            for group, (tp, fp, fn, n) in sorted(counts.items())]


def quality_totals(rows: Sequence[dict[str, Any]], model_version: int | None = None) -> dict[str, Any]:
    """The weekly rows of :func:`quality_by_version` added up (for one model version, when given)."""
    rows = [r for r in rows if model_version is None or r["model_version"] == model_version]
    tp, fp, fn, n = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn", "notes"))
    return {"notes": n, "tp": tp, "fp": fp, "fn": fn, **scores(tp, fp, fn)}
