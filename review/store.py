"""The review database: notes, the model's extractions, people's reviews, reviewers and an audit log.

SQLAlchemy 2 models; the schema is created and upgraded by Alembic (``review/migrations``) whenever a store is
opened, so a SQLite file (the default, ``sqlite:///review.db`` or ``$MEDNER_REVIEW_DB``) needs no setup and a
team's PostgreSQL (``postgresql+psycopg://...``) is upgraded in place. Note text is the only sensitive column
(``Note.text``; ``None`` once redacted); the audit log holds ids, offsets and counts, never text.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medner import database
from medner.database import naive_utcnow

DEFAULT_URL = "sqlite:///review.db"
MIGRATIONS = Path(__file__).parent / "migrations"

# Note.sample: how a note entered the queue. "random" notes are a uniform sample of what was imported (the
# unbiased quality estimate reads only these); "queue" notes are served least certain first.
QUEUE, RANDOM = "queue", "random"
# Note.status
QUEUED, REVIEWED = "queued", "reviewed"
# Review.decision
ACCEPTED, CORRECTED, SKIPPED = "accepted", "corrected", "skipped"


def database_url(url: str | None = None) -> str:
    """``url``, else ``$MEDNER_REVIEW_DB``, else a SQLite file ``review.db`` in the working directory
    (:func:`medner.database.database_url`)."""
    return database.database_url(url, "MEDNER_REVIEW_DB", DEFAULT_URL)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)  # of the text: a note is imported once
    text: Mapped[str | None] = mapped_column(Text)  # None once redacted (retention)
    source: Mapped[str] = mapped_column(String(500))  # file:line or file name: where it came from
    note_group: Mapped[str | None] = mapped_column(String(32))  # a clinic, a specialty (medner.groups)
    imported_at: Mapped[datetime] = mapped_column(DateTime)
    sample: Mapped[str] = mapped_column(String(8))  # QUEUE or RANDOM
    confidence: Mapped[float] = mapped_column(Float)  # lowest entity confidence of its extraction (1: none)
    status: Mapped[str] = mapped_column(String(10), default=QUEUED, index=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)  # bumped by each review: stale forms change nothing
    exported_at: Mapped[datetime | None] = mapped_column(DateTime)
    redacted_at: Mapped[datetime | None] = mapped_column(DateTime)


class Extraction(Base):
    __tablename__ = "extractions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[int | None] = mapped_column(Integer)
    entities: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # {start, end, label, score}: offsets, no text
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Reviewer(Base):
    __tablename__ = "reviewers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # the token itself is shown once, never kept
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # signed into each session cookie; signing out or revocation moves it on, so every older cookie is signed out
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    extraction_id: Mapped[int] = mapped_column(ForeignKey("extractions.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    decision: Mapped[str] = mapped_column(String(10))  # ACCEPTED, CORRECTED or SKIPPED
    entities: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # final {start, end, label}; None: skipped
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class AuditEvent(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))  # a reviewer's name, or "cli"
    action: Mapped[str] = mapped_column(String(20))  # import, review, skip, export, redact, add-reviewer, ...
    note_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)  # ids, offsets, counts: never note text


def audit(session: Session, actor: str, action: str, note_id: int | None = None, **detail: Any) -> None:
    """Add one audit-log row to ``session`` (committed with the change it records)."""
    session.add(AuditEvent(at=naive_utcnow(), actor=actor, action=action, note_id=note_id, detail=detail))


class Store(database.Database):
    """An opened, migrated review database: ``with store.session() as s: ...`` commits on success."""

    migrations, env, default_url = MIGRATIONS, "MEDNER_REVIEW_DB", DEFAULT_URL
