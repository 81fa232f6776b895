"""Metaflow client access in one place: runs by pathspec, a flow's latest successful run, tags.

Reads that must see every user's runs (a run started by a scheduler or a colleague: export, champion tags) go
inside :func:`all_namespaces`, which restores the caller's namespace afterwards, so no library call leaves
Metaflow's global namespace changed behind the caller's back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def all_namespaces() -> Iterator[None]:
    """Metaflow's global namespace (every user's runs) inside the block, the caller's again after it."""
    from metaflow import get_namespace, namespace

    previous = get_namespace()
    namespace(None)
    try:
        yield
    finally:
        namespace(previous)


def get_run(pathspec: str) -> Any:  # -> metaflow.Run
    """The run ``FlowName/run-id``; raises MetaflowNotFound when there is none (in the current namespace)."""
    from metaflow import Run

    return Run(pathspec)


def latest_successful_run(flow: str) -> Any | None:  # -> metaflow.Run | None
    """The latest successful run of ``flow`` in the current namespace, None when it has none."""
    from metaflow import Flow
    from metaflow.exception import MetaflowNotFound

    try:
        return Flow(flow).latest_successful_run
    except MetaflowNotFound:
        return None


def set_tag(pathspec: str, tag: str, present: bool) -> None:
    """Add ``tag`` to the run (``present``) or remove it."""
    run = get_run(pathspec)
    (run.add_tag if present else run.remove_tag)(tag)
