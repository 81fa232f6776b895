"""Review stores on both databases (``store_url``: tests/databases.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from review.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(store_url)
    try:
        yield opened
    finally:
        opened.close()
