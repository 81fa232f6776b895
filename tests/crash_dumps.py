"""A pytest plugin: a test fails when a crash dump (Python's faulthandler: ``Fatal Python error``) shows in
what it, or a process it started, printed. A crash in a child process (a forked server launcher, a flow
step) otherwise leaves the test green, its dump buried in captured output."""

from __future__ import annotations

import pytest

CRASH_MARKER = "Fatal Python error"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    crashed = [name for name, text in report.sections if CRASH_MARKER in text]
    if crashed and not report.failed:
        report.outcome = "failed"
        report.longrepr = f"a crash dump ({CRASH_MARKER!r}) was printed: see {', '.join(crashed)}"
