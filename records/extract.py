"""One shard of an archive into the records store: read, skip what this model version already extracted, tag the
rest (through Triton, or in-process with a model repository's champion), write a batch at a time.

Every note ends as exactly one row: a :class:`~records.store.RecordNote` with its entities, or a
:class:`~records.store.RecordError` (a note the model refuses: empty, not UTF-8, over the size limit; a JSONL line
without text). Each batch is one transaction, so a worker killed mid-shard leaves whole batches behind, and
running the shard again (Metaflow's ``resume``) skips them. A server that cannot answer fails the shard instead
of recording errors: those notes are not bad, and a retry or resume will read them.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from medner.database import naive_utcnow
from medner.inference import Entity, NoteError, validate_note
from medner.inference.notes import DEFAULT_MAX_NOTE_CHARS
from medner.spans import split_sentences, split_words
from records.sources import (
    DEFAULT_SHARD_BYTES,
    DEFAULT_SHARD_NOTES,
    NoteInputError,
    NoteRef,
    cut_shards,
    list_notes,
    read_notes,
)
from records.store import RecordEntity, RecordError, RecordNote, RecordsStore

DEFAULT_BATCH = 64  # notes per extraction call and per transaction
# errors of the server, not of a note: the shard fails (and is retried or resumed) rather than record them
SERVER_FAILURES = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


@dataclass
class Extractor:
    """A served model that tags notes: ``model`` and ``version`` name it in every record; ``extract`` takes
    valid notes (and their group, which a server profiles them by) and returns, for each, its entities or its own
    exception."""

    model: str
    version: int
    extract: Any  # Callable[[list[str], str | None], list[list[Entity] | Exception]]
    max_note_chars: int = DEFAULT_MAX_NOTE_CHARS
    close: Any = lambda: None


def champion_model(repository: Path, model: str = "") -> tuple[str, int]:
    """The served model and version an in-process run uses: ``repository``'s champion, as ``model`` or (default)
    ``ner_int8`` where that version passed its INT8 gate, else ``ner``."""
    from medner.registry import champion, versions

    version = champion(repository)
    if version is None:
        raise FileNotFoundError(f"{repository} has no model version: run `medner export`")
    served = next((v.models for v in versions(repository) if v.version == version), [])
    return model or ("ner_int8" if "ner_int8" in served else "ner"), version


def local_extractor(repository: Path, model: str, version: int, threads: int | None = None) -> Extractor:
    """``model`` at ``version`` of ``repository``, run in this process."""
    from clients.local import LocalNerModel

    local = LocalNerModel(repository, model, threads=threads, version=version)
    return Extractor(model, version, lambda notes, group=None: local.extract(notes, return_exceptions=True),
                     local.max_note_chars)


def triton_extractor(url: str, model: str = "ner", concurrency: int = 16, timeout: float = 60.0) -> Extractor:
    """The model ``model`` of the Triton server at ``url``, at the version the server has loaded."""
    from clients.ner_client import NerClient

    client = NerClient(url, model=model, concurrency=concurrency, timeout=timeout)
    try:
        version = client.model_version()
    except Exception:
        client.close()
        raise
    return Extractor(model, version,
                     lambda notes, group=None: client.extract(notes, return_exceptions=True, group=group),
                     close=client.close)


@dataclass
class Plan:
    """What ExtractFlow's start step decides once for every shard."""

    shards: list[list[NoteRef]]
    model: str
    version: int

    @property
    def notes(self) -> int:
        return sum(len(s) for s in self.shards)


def plan_extraction(*, notes: str, db: str | None, url: str, repository: Path, model: str = "",
                    shard_notes: int = DEFAULT_SHARD_NOTES, shard_bytes: int = DEFAULT_SHARD_BYTES) -> Plan:
    """List and shard ``notes``, bring the store's schema up to date (once, before the workers), and fix the
    model: the server's (``url``) or the repository's champion."""
    refs = list_notes(notes)
    RecordsStore(db).close()
    if url:
        extractor = triton_extractor(url, model or "ner")
        extractor.close()
        model, version = extractor.model, extractor.version
    else:
        model, version = champion_model(repository, model)
    return Plan(cut_shards(refs, shard_notes, shard_bytes), model, version)


def run_shard(*, refs: Sequence[NoteRef], db: str | None, url: str, repository: Path, model: str, version: int,
              run: str, shard: int = 0, batch_size: int = DEFAULT_BATCH, threads: int | None = None) -> ShardStats:
    """:func:`extract_shard` with the store and the extractor opened here (one ExtractFlow task)."""
    store = RecordsStore(db, upgrade=False)
    extractor = triton_extractor(url, model) if url else local_extractor(repository, model, version, threads)
    try:
        return extract_shard(refs, store=store, extractor=extractor, run=run, shard=shard, batch_size=batch_size)
    finally:
        extractor.close()
        store.close()


@dataclass
class ShardStats:
    """What one shard did; ExtractFlow's card sums and tabulates these."""

    shard: int
    notes: int = 0  # read
    extracted: int = 0  # new note rows
    skipped: int = 0  # already in the store for this model version
    errors: int = 0  # new error rows
    entities: dict[str, int] = field(default_factory=dict)  # new entity rows per label
    seconds: float = 0.0
    write_seconds: float = 0.0  # inside the store's transactions
    rss_mb: list[float] = field(default_factory=list)  # after the first batch and after the last

    @property
    def notes_per_second(self) -> float:
        return (self.extracted + self.errors) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notes_per_second": round(self.notes_per_second, 1)}


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def sentence_indexes(text: str, entities: Sequence[Entity]) -> list[int]:
    """The index of the sentence (:func:`medner.spans.split_sentences`, as the model reads the note) holding
    each entity's start."""
    words = split_words(text)
    starts = [words[first][0] for first, _ in split_sentences(text, words)]
    return [max(bisect.bisect_right(starts, e["start"]) - 1, 0) for e in entities]


def extract_shard(refs: Sequence[NoteRef], *, store: RecordsStore, extractor: Extractor, run: str, shard: int = 0,
                  batch_size: int = DEFAULT_BATCH, show_progress: bool = True) -> ShardStats:
    """Every note of ``refs`` into ``store`` once for ``extractor``'s model version (see the module)."""
    from medner.progress import progress

    stats = ShardStats(shard)
    started = time.perf_counter()
    bar = progress(range(len(refs)), desc=f"shard {shard}", unit="note", disable=not show_progress)
    for batch in _batches(read_notes(refs), batch_size):
        _extract_batch(batch, store, extractor, run, stats)
        stats.rss_mb[1:] = [_rss_mb()]
        bar.update(len(batch))
    bar.close()
    stats.seconds = time.perf_counter() - started
    return stats


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _extract_batch(batch: list[tuple[NoteRef, bytes | NoteInputError]], store: RecordsStore, extractor: Extractor,
                   run: str, stats: ShardStats) -> None:
    stats.notes += len(batch)
    hashed = [(ref, payload, sha256(payload if isinstance(payload, bytes) else str(payload).encode()))
              for ref, payload in batch]
    done = _already_stored(store, extractor, {digest for _, _, digest in hashed})
    todo = [(ref, payload, digest) for ref, payload, digest in hashed if (ref.source, ref.note_id, digest) not in done]
    stats.skipped += len(batch) - len(todo)
    texts, results = [], {}
    for position, (_, payload, _) in enumerate(todo):
        try:
            if isinstance(payload, NoteInputError):
                raise payload
            texts.append((position, validate_note(payload, extractor.max_note_chars)))
        except (NoteError, NoteInputError) as err:
            results[position] = err
    for group in dict.fromkeys(todo[position][0].group for position, _ in texts):  # a call per group, in order
        same = [(position, text) for position, text in texts if todo[position][0].group == group]
        for (position, _), result in zip(same, extractor.extract([text for _, text in same], group), strict=True):
            if isinstance(result, Exception) and str(getattr(result, "status", "")) in SERVER_FAILURES:
                raise RuntimeError(f"the server could not tag notes of shard {stats.shard}: {result}") from result
            results[position] = result
    text_of = dict(texts)
    written = time.perf_counter()
    with store.session() as session:
        for position, (ref, _, digest) in enumerate(todo):
            _add_row(session, ref, digest, text_of.get(position), results[position], extractor, run, stats)
    stats.write_seconds += time.perf_counter() - written
    if not stats.rss_mb:
        stats.rss_mb.append(_rss_mb())


def _add_row(session: Any, ref: NoteRef, digest: str, text: str | None, result: list[Entity] | Exception,
             extractor: Extractor, run: str, stats: ShardStats) -> None:
    key = {"source": ref.source, "note_id": ref.note_id, "sha256": digest, "model": extractor.model,
           "model_version": extractor.version, "run": run, "note_group": ref.group}
    if isinstance(result, Exception):
        reason = getattr(result, "reason", result)  # a server's refusal without the client's "note N:" prefix
        message = str(result) if isinstance(result, NoteInputError) else f"{ref.where}: {reason}"
        session.add(RecordError(**key, at=naive_utcnow(), error=message[:500]))
        stats.errors += 1
        return
    note = RecordNote(**key, extracted_at=naive_utcnow(), entity_count=len(result))
    session.add(note)
    session.flush()  # its id, for the entities
    for entity, sentence in zip(result, sentence_indexes(text or "", result), strict=True):
        session.add(RecordEntity(note=note.id, label=entity["label"], start=entity["start"], end=entity["end"],
                                 text=entity["text"], score=float(entity["score"]), sentence=sentence))
    stats.extracted += 1
    stats.entities = dict(Counter(stats.entities) + Counter(e["label"] for e in result))


def _already_stored(store: RecordsStore, extractor: Extractor, digests: set[str]) -> set[tuple[str, str, str]]:
    """(source, note_id, sha256) of the notes among ``digests`` this model version has a row for."""
    from sqlalchemy import select

    found: set[tuple[str, str, str]] = set()
    with store.session() as session:
        for table in (RecordNote, RecordError):
            query = select(table.source, table.note_id, table.sha256).where(
                table.model == extractor.model, table.model_version == extractor.version, table.sha256.in_(digests))
            found.update((source, note_id, digest) for source, note_id, digest in session.execute(query))
    return found


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1)
