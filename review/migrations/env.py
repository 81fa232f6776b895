"""Alembic environment: runs on the connection :func:`medner.database.migrate` passes (online mode only)."""

from alembic import context

from review.store import Base

attributes = context.config.attributes
context.configure(connection=attributes["connection"], target_metadata=Base.metadata, render_as_batch=True,
                  version_table=attributes.get("version_table", "alembic_version"))
with context.begin_transaction():
    context.run_migrations()
