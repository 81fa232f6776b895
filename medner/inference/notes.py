"""What the service accepts as a note (UTF-8, not empty, not too long), and the notes of a batch of
requests gathered for one call, each bad request refused alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_MAX_NOTE_CHARS = 100_000  # ~15,000 words: tagging time grows with a note's length, so a bound keeps one note
# from holding an instance for long


class NoteError(ValueError):
    """A note the service cannot take (not UTF-8, empty, too long); the message says which."""


def validate_note(note: str | bytes, max_chars: int = DEFAULT_MAX_NOTE_CHARS) -> str:
    """The note as text, or NoteError. Messages never quote the note (clinical text stays private)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as err:
            raise NoteError(f"note is not valid UTF-8 (byte {err.start})") from None
    if not note.strip():
        raise NoteError("note is empty")
    if len(note) > max_chars:
        raise NoteError(f"note has {len(note)} characters; the limit is {max_chars}")
    return note


@dataclass
class RequestNotes:
    """The notes of a batch of requests in one list, for one batched call."""

    notes: list[str]  # every valid note, request after request
    slices: list[tuple[int, int, int]]  # (request index, its first note in ``notes``, its note count)
    errors: dict[int, str]  # request index -> why it was refused (a request with one bad note fails whole)


def gather_notes(requests: Sequence[Sequence[str | bytes]], max_chars: int = DEFAULT_MAX_NOTE_CHARS,
                 refused: Mapping[int, str] | None = None) -> RequestNotes:
    """Validate the notes of each request (:func:`validate_note`) and gather the valid requests' notes;
    ``refused``: requests already refused for another reason (index -> why), whose notes are not read."""
    gathered = RequestNotes([], [], dict(refused or {}))
    for index, raw in enumerate(requests):
        if index in gathered.errors:
            continue
        try:
            texts = [validate_note(note, max_chars) for note in raw]
        except NoteError as err:
            gathered.errors[index] = str(err)
            continue
        gathered.slices.append((index, len(gathered.notes), len(texts)))
        gathered.notes.extend(texts)
    return gathered
