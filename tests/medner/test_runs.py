"""Metaflow access leaves the caller's namespace as it found it."""

from __future__ import annotations

import pytest
from metaflow import get_namespace, namespace

from medner.runs import all_namespaces


def test_all_namespaces_restores_the_callers_namespace() -> None:
    previous = get_namespace()
    try:
        namespace("user:someone")
        with all_namespaces():
            assert get_namespace() is None
        assert get_namespace() == "user:someone"
        with pytest.raises(RuntimeError, match="inside"), all_namespaces():
            raise RuntimeError("inside")
        assert get_namespace() == "user:someone"  # restored on an error too
    finally:
        namespace(previous)
