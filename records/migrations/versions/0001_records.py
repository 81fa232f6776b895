"""The records store: notes read, their entities, refused notes; the disease -> treatment knowledge base.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

KEY = ["source", "note_id", "sha256", "model", "model_version"]


def _extraction_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(1000), nullable=False),
        sa.Column("note_id", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("run", sa.String(300), nullable=False),
        sa.Column("note_group", sa.String(32), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "record_notes", *_extraction_columns(),
        sa.Column("extracted_at", sa.DateTime(), nullable=False),
        sa.Column("entity_count", sa.Integer(), nullable=False),
        sa.UniqueConstraint(*KEY, name="uq_record_notes_extraction"),
    )
    op.create_index("ix_record_notes_sha256", "record_notes", ["sha256"])
    op.create_table(
        "record_entities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("note", sa.Integer(), sa.ForeignKey("record_notes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(1), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("sentence", sa.Integer(), nullable=False),
    )
    op.create_index("ix_record_entities_note", "record_entities", ["note"])
    op.create_table(
        "record_errors", *_extraction_columns(),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("error", sa.String(500), nullable=False),
        sa.UniqueConstraint(*KEY, name="uq_record_errors_extraction"),
    )
    op.create_table(
        "kb_pairs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("disease", sa.String(500), nullable=False),
        sa.Column("disease_id", sa.String(32), nullable=True),
        sa.Column("treatment", sa.String(500), nullable=False),
        sa.Column("treatment_id", sa.String(32), nullable=True),
        sa.Column("mentions", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Integer(), nullable=False),
        sa.Column("mean_confidence", sa.Float(), nullable=False),
    )
    op.create_index("ix_kb_pairs_disease", "kb_pairs", ["disease"])
    op.create_index("ix_kb_pairs_disease_id", "kb_pairs", ["disease_id"])
    op.create_table(
        "kb_evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("pair", sa.Integer(), sa.ForeignKey("kb_pairs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("note", sa.Integer(), sa.ForeignKey("record_notes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("disease_start", sa.Integer(), nullable=False),
        sa.Column("disease_end", sa.Integer(), nullable=False),
        sa.Column("treatment_start", sa.Integer(), nullable=False),
        sa.Column("treatment_end", sa.Integer(), nullable=False),
    )
    op.create_index("ix_kb_evidence_pair", "kb_evidence", ["pair"])


def downgrade() -> None:
    for table in ("kb_evidence", "kb_pairs", "record_errors", "record_entities", "record_notes"):
        op.drop_table(table)
