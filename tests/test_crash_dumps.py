"""The suite fails a test during which any process printed a crash dump (tests/crash_dumps.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CRASHING_TEST = '''
import subprocess, sys

def test_child_segfaults():  # the child crashes; the test itself would pass
    subprocess.run([sys.executable, "-X", "faulthandler", "-c", "import faulthandler; faulthandler._sigsegv()"])

def test_quiet():
    pass
'''


def test_a_crash_dump_in_a_child_fails_the_test(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(CRASHING_TEST)
    # a separate pytest, its output kept here: the dump must not reach this test's own captured output
    inner = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.crash_dumps", "-p", "no:cacheprovider",
                            "-q", str(tmp_path / "test_inner.py")], cwd=ROOT, capture_output=True, text=True)
    assert inner.returncode == 1, inner.stdout[-2000:]
    assert "1 failed, 1 passed" in inner.stdout
    assert "FAILED" in inner.stdout and "test_child_segfaults" in inner.stdout
    assert "crash dump" in inner.stdout
