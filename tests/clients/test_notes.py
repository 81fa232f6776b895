"""Reading notes for `medner extract`: ids that name where each note came from, blank lines skipped."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from clients.notes import read_notes


def test_lines_of_files_and_txt_files_of_folders(tmp_path: Path) -> None:
    lines = tmp_path / "notes.txt"
    lines.write_bytes(b"Asthma.\n\n  \nTamoxifen for breast cancer.\r\n\xff not UTF-8\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.txt").write_bytes(b"second\nnote, two lines")
    (folder / "a.txt").write_bytes(b"first")
    (folder / "skipped.md").write_bytes(b"not a note")
    assert read_notes([lines, folder]) == [
        (f"{lines}:1", b"Asthma."), (f"{lines}:4", b"Tamoxifen for breast cancer."),
        (f"{lines}:5", b"\xff not UTF-8"),  # read as bytes: the server names the bad note, nothing is lost here
        ("a.txt", b"first"), ("b.txt", b"second\nnote, two lines"),
    ]


@pytest.mark.parametrize("inputs", [[], [Path("-")]])
def test_standard_input_by_default_or_dash(monkeypatch: pytest.MonkeyPatch, inputs: list[Path]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\n\ntwo\r\n")))
    assert read_notes(inputs) == [("stdin:1", b"one"), ("stdin:3", b"two")]
