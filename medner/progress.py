"""Progress bars that read well both in a terminal and in Metaflow's line-based task logs."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


class _LineWriter:
    """Turns tqdm's carriage-return redraws into whole lines (Metaflow logs only whole lines)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.strip("\r\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable[T], **kwargs: Any) -> Any:
    """``tqdm(iterable)``; off a terminal, one plain line at most every 10 seconds."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("file", _LineWriter(sys.stderr))
        kwargs.setdefault("mininterval", 10.0)
        kwargs.setdefault("ascii", True)
    return tqdm(iterable, **kwargs)
