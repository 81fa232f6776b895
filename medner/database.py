"""Opening a SQL database by URL, the way every store of the project does (the review store, the records store):
SQLite by default, PostgreSQL by URL with the driver medner installs, the schema brought to its newest Alembic
revision on open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SQLITE_BUSY_SECONDS = 60.0
# SQLAlchemy and Alembic are imported inside the functions: the core stays importable without them.


def database_url(url: str | None, env: str, default: str) -> str:
    """``url``, else ``$env``, else ``default``; a plain ``postgresql://`` URL gets the driver medner installs
    (psycopg 3) instead of SQLAlchemy's default psycopg2."""
    url = url or os.environ.get(env) or default
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


def naive_utcnow() -> datetime:
    """Now, UTC, without tzinfo: how every timestamp is stored (SQLite keeps no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _private_sqlite_file(url: str) -> None:
    """Create a SQLite database file readable by its owner only (0600), before SQLite creates it with the umask's
    mode: the stores hold note text (review) and mentions (records)."""
    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if path and path != ":memory:" and not Path(path).exists() and Path(path).parent.is_dir():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # (a missing folder stays SQLite's clear error)


def make_engine(url: str) -> Any:
    """An engine for ``url``; SQLite enforces foreign keys like PostgreSQL does, and a writer waits up to
    ``SQLITE_BUSY_SECONDS`` for another process's transaction (parallel ExtractFlow workers) instead of failing."""
    from sqlalchemy import create_engine, event

    sqlite = url.startswith("sqlite")
    if sqlite:
        _private_sqlite_file(url)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS} if sqlite else {})
    if sqlite:
        event.listen(engine, "connect", _sqlite_foreign_keys)
    return engine


def migrate(engine: Any, migrations: Path, version_table: str = "alembic_version") -> None:
    """Create or upgrade the schema of ``migrations`` (an Alembic script folder) to its newest revision.
    Each store keeps its own ``version_table``, so two stores can share one database."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["version_table"] = version_table
        command.upgrade(config, "head")


class Database:
    """An opened, migrated database: ``with db.session() as s: ...`` commits on success. Subclasses name their
    ``migrations`` folder, Alembic ``version_table``, URL variable ``env`` and ``default_url``."""

    migrations: Path
    version_table = "alembic_version"
    env: str
    default_url: str

    def __init__(self, url: str | None = None, *, upgrade: bool = True):
        from sqlalchemy.orm import sessionmaker

        self.url = database_url(url, self.env, self.default_url)
        self.engine = make_engine(self.url)
        if upgrade:
            migrate(self.engine, self.migrations, self.version_table)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Any]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
