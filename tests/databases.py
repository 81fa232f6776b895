"""Databases for the stores' tests: a SQLite file, and a real PostgreSQL server the session starts with the
machine's ``initdb``/``pg_ctl`` (as the ``postgres`` account when the tests run as root, which PostgreSQL
refuses), on 127.0.0.1 and a free port, in a temporary folder; each test gets a database of its own."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_databases = itertools.count()


def _as_postgres(folder: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    shutil.chown(folder, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server (user ``medner``, trust auth on 127.0.0.1), stopped after the session."""
    from medner.triton import free_ports

    for binary in ("initdb", "pg_ctl"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} not on PATH: the PostgreSQL tests need the server binaries (see DESIGN.md)")
    folder = Path(tempfile.mkdtemp(prefix="medner-pg-"))  # not under pytest's 0700 root-owned folder
    user = _as_postgres(folder)
    data, (port,) = folder / "data", free_ports(1)
    subprocess.run([*user, "initdb", "-D", str(data), "-U", "medner", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*user, "pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
                    f"-h 127.0.0.1 -p {port} -k {folder} -F", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://medner@127.0.0.1:{port}"
    finally:
        subprocess.run([*user, "pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"], check=False,
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _fresh_postgres_database(server: str) -> str:
    import psycopg

    name = f"store_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(f"{server.replace('postgresql+psycopg', 'postgresql')}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = _fresh_postgres_database(request.getfixturevalue("postgres_server"))
    return url.replace("postgresql+psycopg://", "postgresql://")  # as a user writes it: the driver is implied
