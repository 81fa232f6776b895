"""`medner review serve` as a user starts it: a subprocess on a free 127.0.0.1 port, its address read from the
line it prints once the socket listens; its stderr is echoed when it stops (a crash dump fails the test)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def medner(*args: str) -> str:
    """Run a ``medner`` command; its standard output."""
    return subprocess.run([sys.executable, "-m", "medner.cli", *args], check=True, capture_output=True,
                          text=True, env={**os.environ}).stdout.strip()


@contextmanager
def review_server(db: str, *options: str, log: list[str] | None = None) -> Iterator[str]:
    """The server's address; when it has stopped, what it wrote to stderr is appended to ``log``."""
    process = subprocess.Popen([sys.executable, "-m", "medner.cli", "review", "serve", "--db", db, "--port", "0",
                                *options], stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert line.startswith("review app on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        process.terminate()
        rest = process.communicate()[1]
        sys.stderr.write(rest)
        if log is not None:
            log.append(line + rest)
