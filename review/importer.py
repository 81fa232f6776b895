"""``medner review import``: tag notes through the served model (or in-process) and queue them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medner.config import DEFAULT_GRPC_URL
from medner.registry import champion
from review.queue import DEFAULT_RANDOM_SHARE, ImportResult, add_notes, new_notes
from review.store import Store

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

IMPORT_BATCH = 256  # notes tagged and committed together: an interrupted import keeps what was committed


def import_notes(notes: Sequence[tuple[str, str]], store: Store, *, url: str = DEFAULT_GRPC_URL,
                 local: Path | None = None, model: str = "ner", model_version: int | None = None,
                 random_share: float = DEFAULT_RANDOM_SHARE, group: str | None = None) -> ImportResult:
    """Tag ``(source, text)`` notes (Triton at ``url``, or the champion of repository ``local`` in-process)
    and queue them in ``store``, with a progress bar; ``model_version`` defaults to the local repository's
    champion (for a server, say which version serves). Notes already stored are not tagged again. ``group``:
    the notes' group (:mod:`medner.groups`), kept with each note and sent to the server, which profiles by it."""
    from clients.notes import extract_notes
    from medner.progress import progress

    if local is not None and model_version is None:

        model_version = champion(local)
    total = ImportResult()
    bar = progress(None, total=len(notes), unit="note", desc="import")
    for first in range(0, len(notes), IMPORT_BATCH):
        batch = notes[first: first + IMPORT_BATCH]
        with store.session() as session:
            batch, known = new_notes(session, batch)
        total.duplicates += known
        extractions = extract_notes([text for _, text in batch], url=url, local=local, model=model,
                                    with_uncertainty=True, group=group) if batch else []
        with store.session() as session:
            result = add_notes(session, batch, extractions, model=model, model_version=model_version,
                               random_share=random_share, group=group)
        total.imported += result.imported
        total.duplicates += result.duplicates
        total.failed.update(result.failed)
        bar.update(len(notes[first: first + IMPORT_BATCH]))
    bar.close()
    return total


def import_files(inputs: Sequence[Path], store: Store, **options: Any) -> ImportResult:
    """:func:`import_notes` of the notes in ``inputs`` (:func:`read_note_files`) into ``store``."""
    return import_notes(read_note_files(inputs), store, **options)


def read_note_files(paths: Sequence[Path]) -> list[tuple[str, str]]:
    """Notes of text files (a note a line) and folders (a note a ``.txt`` file), as ``(source, text)``; a note
    that is not UTF-8 is reported by source and byte offset."""
    from clients.notes import read_notes

    notes = []
    for source, raw in read_notes(list(paths)):
        try:
            notes.append((source, raw.decode("utf-8")))
        except UnicodeDecodeError as err:
            raise ValueError(f"{source}: not UTF-8 (byte {err.start})") from None
    return notes
