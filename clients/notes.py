"""Notes from files or standard input, and one call that tags them through Triton or in-process."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from medner.config import DEFAULT_GRPC_URL

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.


def read_notes(inputs: Sequence[Path]) -> list[tuple[str, bytes]]:
    """(id, note) pairs: lines of text files (``file:line``), .txt files of folders (one note each,
    id = file name), or standard input lines when no input or ``-`` is given. Blank lines are skipped."""
    notes: list[tuple[str, bytes]] = []
    for source in inputs or [Path("-")]:
        if str(source) == "-":
            notes += [(f"stdin:{n}", line.rstrip(b"\r\n")) for n, line in enumerate(sys.stdin.buffer, 1)
                      if line.strip()]
        elif source.is_dir():
            notes += [(p.name, p.read_bytes()) for p in sorted(source.glob("*.txt"))]
        else:
            notes += [(f"{source}:{n}", line) for n, line in enumerate(source.read_bytes().splitlines(), 1)
                      if line.strip()]
    return notes


def extract_notes(notes: Sequence[bytes | str], *, url: str = DEFAULT_GRPC_URL, local: Path | None = None,
                  model: str = "ner", timeout: float = 60.0, concurrency: int = 16, with_uncertainty: bool = False,
                  group: str | None = None) -> list:
    """Entities of each note (``with_uncertainty``: its ``medner.inference.TaggedNote``), or its own exception:
    through the Triton server at ``url``, or in-process on the model repository ``local`` when given. ``group``:
    the notes' group, which the server's profiles are segmented by (in-process: validated, nothing profiles)."""
    if local is not None:
        from clients.local import LocalNerModel
        from medner.groups import validate_group

        validate_group(group)  # (NerClient checks it itself)
        return LocalNerModel(local, model).extract(list(notes), return_exceptions=True,
                                                   with_uncertainty=with_uncertainty)
    from clients.ner_client import NerClient

    with NerClient(url, model=model, timeout=timeout, concurrency=concurrency) as client:
        return client.extract(list(notes), return_exceptions=True, with_uncertainty=with_uncertainty, group=group)
