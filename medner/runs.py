"""Metaflow client access in one place: runs by pathspec, a flow's latest successful run, tags, branches.

Every flow carries ``@project(name="medner")``, so each run and deployment belongs to a *branch*: ``prod``
(``--production``: what serves and what the scheduler runs), ``user.NAME`` (a researcher's own runs, the
default) or ``test.NAME``/``prod.NAME`` (``--branch NAME``). Export, promotion and monitoring read the
production branch unless told another (:func:`resolve_branch`), never everyone's runs.

Reads that must see every user's runs (a run started by a scheduler or a colleague) go inside
:func:`all_namespaces`, which restores the caller's namespace afterwards, so no library call leaves Metaflow's
global namespace changed behind the caller's back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medner.config import PRODUCTION_BRANCH, PROJECT

OWN_BRANCH = "user"  # --branch user: the caller's own user branch (user.<Metaflow user name>)


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


def resolve_branch(branch: str) -> str:
    """A @project branch name: ``prod``, ``user.NAME``, ``test.NAME``, ``prod.NAME`` as given; ``user`` alone is
    the caller's own branch (``user.`` + Metaflow's user name)."""
    if branch == OWN_BRANCH:
        from metaflow.util import get_username

        return f"user.{get_username()}"
    return branch


def branch_options(branch: str) -> dict[str, Any]:
    """The top-level options (Metaflow ``Runner`` keyword arguments) that start a run on ``branch``: ``prod``
    is ``--production``, ``test.NAME``/``prod.NAME`` are ``--branch NAME`` (with ``--production``), a user branch
    needs none (a run is always on its own user's branch)."""
    if branch == PRODUCTION_BRANCH:
        return {"production": True}
    kind, _, name = branch.partition(".")
    if kind in ("test", "prod") and name:
        return {"branch": name, **({"production": True} if kind == "prod" else {})}
    if kind == OWN_BRANCH:
        return {}
    raise ValueError(f"unknown @project branch {branch!r}: expected prod, user, user.NAME, test.NAME or prod.NAME")


def get_run(pathspec: str) -> Any:  # -> metaflow.Run
    """The run ``FlowName/run-id``; raises MetaflowNotFound when there is none (in the current namespace)."""
    from metaflow import Run

    return Run(pathspec)


def latest_successful_run(flow: str, branch: str | None = None) -> Any | None:  # -> metaflow.Run | None
    """The latest successful run of ``flow`` on the @project ``branch`` (see :func:`resolve_branch`), whoever
    started it; without a branch, in the current namespace. None when there is none."""
    from metaflow import Flow
    from metaflow.exception import MetaflowNotFound

    try:
        if branch is None:
            return Flow(flow).latest_successful_run
        tags = (f"project:{PROJECT}", f"project_branch:{resolve_branch(branch)}")
        with all_namespaces():  # the run object keeps the namespace it was made in: usable after the block
            return next((run for run in Flow(flow).runs(*tags) if run.successful), None)
    except MetaflowNotFound:
        return None


def set_tag(pathspec: str, tag: str, present: bool) -> None:
    """Add ``tag`` to the run (``present``) or remove it."""
    run = get_run(pathspec)
    (run.add_tag if present else run.remove_tag)(tag)
