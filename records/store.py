"""The records database: what ExtractFlow read from an archive of notes, and the knowledge base built from it.

SQLAlchemy 2 models; Alembic (``records/migrations``, its own version table, so the records may share a
database with the review store) creates and upgrades the schema whenever a store is opened: a SQLite file by
default (``sqlite:///records.db`` or ``$MEDNER_RECORDS_DB``), PostgreSQL by URL. The note text is not kept: a note
row holds its id, where it came from and its hash; an entity row holds its mention (what a record is for); an
error row holds why a note was refused, never its text.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from medner import database

DEFAULT_URL = "sqlite:///records.db"
DB_ENV = "MEDNER_RECORDS_DB"
MIGRATIONS = Path(__file__).parent / "migrations"
# what identifies one extraction of one note: a note read again with the same content by the same model version
# is skipped (ExtractFlow is idempotent and resumable)
EXTRACTION_KEY = ("source", "note_id", "sha256", "model", "model_version")


class Base(DeclarativeBase):
    pass


class RecordNote(Base):
    __tablename__ = "record_notes"
    __table_args__ = (UniqueConstraint(*EXTRACTION_KEY, name="uq_record_notes_extraction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(1000))  # the input: folder, JSONL file or s3:// prefix
    note_id: Mapped[str] = mapped_column(String(500))  # the file's path in the folder, or the JSONL "id"
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the note's UTF-8 text
    model: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[int] = mapped_column(Integer)
    run: Mapped[str] = mapped_column(String(300))  # the Metaflow task (or caller) that wrote it
    note_group: Mapped[str | None] = mapped_column(String(32))  # a clinic, a specialty (medner.groups)
    extracted_at: Mapped[datetime] = mapped_column(DateTime)
    entity_count: Mapped[int] = mapped_column(Integer)


class RecordEntity(Base):
    __tablename__ = "record_entities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note: Mapped[int] = mapped_column(ForeignKey("record_notes.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(1))  # D or T
    start: Mapped[int] = mapped_column(Integer)  # character offsets in the note
    end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    sentence: Mapped[int] = mapped_column(Integer)  # index of its sentence in the note (medner.spans)


class RecordError(Base):
    __tablename__ = "record_errors"
    __table_args__ = (UniqueConstraint(*EXTRACTION_KEY, name="uq_record_errors_extraction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(1000))
    note_id: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))  # of the bytes read (the note is refused: they may not be text)
    model: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[int] = mapped_column(Integer)
    run: Mapped[str] = mapped_column(String(300))
    note_group: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime)
    error: Mapped[str] = mapped_column(String(500))  # why; never the note's text


class KbPair(Base):
    """A disease and a treatment named in one sentence of a note, aggregated over the records."""

    __tablename__ = "kb_pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    disease: Mapped[str] = mapped_column(String(500), index=True)  # normalised name (records.kb.normalise_name)
    disease_id: Mapped[str | None] = mapped_column(String(32), index=True)  # MeSH id, where the dictionary knows it
    treatment: Mapped[str] = mapped_column(String(500))
    treatment_id: Mapped[str | None] = mapped_column(String(32))  # a drug's MeSH id (else DrugBank/MedlinePlus)
    mentions: Mapped[int] = mapped_column(Integer)  # sentences naming both
    notes: Mapped[int] = mapped_column(Integer)  # distinct notes among them
    mean_confidence: Mapped[float] = mapped_column(Float)  # mean over mentions of the lower of the two scores


class KbEvidence(Base):
    __tablename__ = "kb_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair: Mapped[int] = mapped_column(ForeignKey("kb_pairs.id", ondelete="CASCADE"), index=True)
    note: Mapped[int] = mapped_column(ForeignKey("record_notes.id", ondelete="CASCADE"))
    disease_start: Mapped[int] = mapped_column(Integer)
    disease_end: Mapped[int] = mapped_column(Integer)
    treatment_start: Mapped[int] = mapped_column(Integer)
    treatment_end: Mapped[int] = mapped_column(Integer)


class RecordsStore(database.Database):
    """An opened, migrated records database: ``with store.session() as s: ...`` commits on success."""

    migrations, version_table, env, default_url = MIGRATIONS, "records_alembic_version", DB_ENV, DEFAULT_URL
