"""An archive of notes as ExtractFlow reads it: a folder of ``.txt`` files (one note each), JSONL files of
``{"id", "text"}`` lines, or an ``s3://bucket/prefix`` of either; listed once into :class:`NoteRef` s (where each
note lies, not its text), cut into shards, and read back shard by shard.

A problem with the input as a whole (a path or prefix with no notes) is an :class:`InputError`, one line; a
problem with one note (a JSONL line that is not JSON or has no ``text``, a repeated id) is a :class:`NoteInputError`
that ExtractFlow records as that note's error row. Messages name the file and line, never the text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from medner.groups import GROUP_RULE, GroupError, validate_group
from medner.s3 import is_s3, s3_client, split_s3_url

SUFFIXES = (".txt", ".jsonl")
DEFAULT_SHARD_NOTES = 10_000  # notes per shard: a shard is the unit of retry and of resume
DEFAULT_SHARD_BYTES = 64 * 2**20  # and at most this many bytes of notes


class InputError(ValueError):
    """The input cannot be listed (nothing there, not a folder, file or prefix of notes)."""


class NoteInputError(ValueError):
    """One note cannot be read from its file; the message names the file and line."""


@dataclass(frozen=True)
class NoteRef:
    """Where one note lies: ``location`` (a file or ``s3://`` object), bytes ``offset`` to ``offset + length``
    (``length`` -1: the whole object); ``line``: its JSONL line (0 for a .txt file); ``problem``: why it cannot be
    read, found when listing (a repeated id)."""

    source: str  # the input as given
    note_id: str
    location: str
    offset: int = 0
    length: int = -1
    line: int = 0
    problem: str = ""
    group: str | None = None

    @property
    def size(self) -> int:
        return max(self.length, 0)

    @property
    def where(self) -> str:
        return f"{self.location}:{self.line}" if self.line else self.location


def list_notes(source: str) -> list[NoteRef]:
    """Every note of ``source`` (a folder, a .txt or .jsonl file, or an s3:// prefix), in a stable order."""
    objects = _s3_objects(source) if is_s3(source) else _local_files(source)
    refs: list[NoteRef] = []
    for location, name, size in objects:
        if name.endswith(".jsonl"):
            refs += _jsonl_refs(source, location, _read(location, 0, -1), _folder_group(name))
        else:
            refs.append(NoteRef(source, name, location, 0, size, group=_folder_group(name)))
    return refs


def _folder_group(name: str) -> str | None:
    """The group of a file at ``name`` (its path in the input): its first folder, when that is a group label
    (a folder named otherwise is no group: its notes are extracted all the same)."""
    folder = name.split("/")[0] if "/" in name else None
    try:
        return validate_group(folder)
    except GroupError:
        return None


def _local_files(source: str) -> list[tuple[str, str, int]]:
    path = Path(source)
    if path.is_file() and path.suffix in SUFFIXES:
        return [(str(path), path.name, path.stat().st_size)]
    if not path.is_dir():
        raise InputError(f"{source}: no such folder, .txt or .jsonl file")
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{source}: no .txt or .jsonl files in this folder")
    return [(str(p), p.relative_to(path).as_posix(), p.stat().st_size) for p in files]


def _s3_objects(source: str) -> list[tuple[str, str, int]]:
    from botocore.exceptions import ClientError

    bucket, prefix = split_s3_url(source)
    found: list[tuple[str, str, int]] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [(f"s3://{bucket}/{o['Key']}", o["Key"].removeprefix(prefix).lstrip("/"), o["Size"])
                      for o in page.get("Contents", []) if o["Key"].endswith(SUFFIXES)]
    except ClientError as err:
        raise InputError(f"{source}: {err.response['Error'].get('Code', 'error')} listing the bucket") from None
    if not found:
        raise InputError(f"{source}: no .txt or .jsonl objects under this prefix")
    return sorted(found)


def _jsonl_refs(source: str, location: str, content: bytes, folder_group: str | None) -> list[NoteRef]:
    """A ref per non-blank line; the id is the line's ``id``, else ``FILE:LINE``; the group its ``group`` (a value
    that is not a group label makes the line an error), else ``folder_group``."""
    refs: list[NoteRef] = []
    first_line: dict[str, int] = {}
    offset = 0
    for number, line in enumerate(content.splitlines(keepends=True), 1):
        if line.strip():
            record = _line_record(line)
            note_id = _field(record, "id") or f"{Path(location).name}:{number}"
            group, problem = _field(record, "group"), ""
            try:
                group = validate_group(group) if group is not None else folder_group
            except GroupError:
                group, problem = None, f'its "group" is not a group label: {GROUP_RULE}'
            if note_id in first_line:
                problem = f"repeats the id of line {first_line[note_id]}"
            first_line.setdefault(note_id, number)
            refs.append(NoteRef(source, note_id, location, offset, len(line), number, problem, group))
        offset += len(line)
    return refs


def _line_record(line: bytes) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _field(record: dict, name: str) -> str | None:
    value = record.get(name)
    return str(value) if isinstance(value, str | int) and str(value) else None


def cut_shards(refs: Sequence[NoteRef], max_notes: int = DEFAULT_SHARD_NOTES, max_bytes: int = DEFAULT_SHARD_BYTES
          ) -> list[list[NoteRef]]:
    """Consecutive refs, at most ``max_notes`` and (unless one note alone is larger) ``max_bytes`` per shard."""
    if max_notes < 1 or max_bytes < 1:
        raise ValueError("shards need at least one note and one byte")
    shards: list[list[NoteRef]] = []
    current: list[NoteRef] = []
    size = 0
    for ref in refs:
        if current and (len(current) >= max_notes or size + ref.size > max_bytes):
            shards.append(current)
            current, size = [], 0
        current.append(ref)
        size += ref.size
    return shards + [current] if current else shards


def read_notes(refs: Iterable[NoteRef]) -> Iterator[tuple[NoteRef, bytes | NoteInputError]]:
    """Each ref with its note (UTF-8 bytes as stored, not yet validated) or why it cannot be read. The refs of
    one file are read with one request."""
    for location, same_file in groupby(refs, key=lambda ref: ref.location):
        same_file = list(same_file)
        if same_file[0].length < 0 or not same_file[0].line:  # a whole .txt file
            for ref in same_file:
                yield ref, _read(location, 0, -1)
            continue
        start = min(ref.offset for ref in same_file)
        block = _read(location, start, max(ref.offset + ref.length for ref in same_file) - start)
        for ref in same_file:
            yield ref, (NoteInputError(f"{ref.where}: {ref.problem}") if ref.problem
                        else _jsonl_text(ref, block[ref.offset - start: ref.offset - start + ref.length]))


def _jsonl_text(ref: NoteRef, line: bytes) -> bytes | NoteInputError:
    try:
        record = json.loads(line)
    except ValueError as err:
        return NoteInputError(f"{ref.where}: not a JSON object ({type(err).__name__} at column {err.pos + 1})"
                              if isinstance(err, json.JSONDecodeError) else f"{ref.where}: not UTF-8 JSON")
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        return NoteInputError(f'{ref.where}: no "text" string in this line')
    return text.encode("utf-8", errors="surrogatepass")


def _read(location: str, offset: int, length: int) -> bytes:
    if is_s3(location):
        bucket, key = split_s3_url(location)
        extra = {"Range": f"bytes={offset}-{offset + length - 1}"} if length >= 0 else {}
        return s3_client().get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    with open(location, "rb") as file:
        file.seek(offset)
        return file.read(length)
