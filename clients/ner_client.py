"""gRPC client for the ``ner`` model (text in, entities out).

Notes travel ``batch_size`` to a request (fewer round trips; Triton's dynamic batcher merges requests
further), up to ``concurrency`` requests in flight. A request refused because of a bad note is
retried note by note, so only that note fails. UNAVAILABLE answers (server starting, restarting,
overloaded) are retried with exponential backoff until ``retries`` runs out or, with ``deadline``
(seconds per call), with backoff capped at ``max_backoff`` until the deadline passes; then the call fails
with "server unavailable after Xs".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import numpy as np

from medner.config import DEFAULT_GRPC_URL, grpc_tls
from medner.groups import GROUP_PARAMETER, validate_group
from medner.inference import Entity, TaggedNote

RETRYABLE = {"StatusCode.UNAVAILABLE"}
# gRPC's own reconnect backoff grows to 120 s by default: after a server restart the channel would sit out
# that backoff and fail calls fast with UNAVAILABLE. Capped at 1 s, serving resumes within ~1 s of the
# server being back.
CHANNEL_ARGS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000)]


class NerRequestError(RuntimeError):
    """The server refused or failed one note; ``index`` is its position in the call, ``attempts`` how many
    times its request was sent."""

    def __init__(self, index: int, status: str, message: str, attempts: int = 1):
        self.index, self.status, self.reason, self.attempts = index, status, message, attempts
        super().__init__(f"note {index}: {message}")


class AsyncNerClient:
    """``async with AsyncNerClient("127.0.0.1:8001") as client: await client.extract(notes)``."""

    def __init__(self, url: str = DEFAULT_GRPC_URL, model: str = "ner", timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.2, concurrency: int = 16, batch_size: int = 8, deadline: float | None = None,
                 max_backoff: float = 2.0):
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url, channel_args=CHANNEL_ARGS, **grpc_tls())
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.deadline, self.max_backoff = deadline, max_backoff
        self.concurrency, self.batch_size = concurrency, batch_size

    async def __aenter__(self) -> AsyncNerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.close()

    def _until(self) -> float | None:
        """The monotonic time a call started now must end by (None: no deadline)."""
        return None if self.deadline is None else time.monotonic() + self.deadline

    async def infer(self, payloads: list[bytes], index: int = 0, until: float | None = None,
                    with_uncertainty: bool = False, group: str | None = None) -> list[list[Entity]] | list[TaggedNote]:
        """Entities of each note in ``payloads`` (UTF-8), sent as one request (``with_uncertainty``: each note's
        :class:`~medner.inference.TaggedNote`); retried on UNAVAILABLE; raises NerRequestError (``index``: the
        first note's position, for the message). ``until``: the call's deadline (monotonic time; default:
        ``deadline`` seconds from now, when set). ``group``: the notes' group (:mod:`medner.groups`), a request
        parameter the server profiles by."""
        from tritonclient.utils import InferenceServerException

        started = time.monotonic()
        until = until if until is not None else self._until()
        text = self._grpc.InferInput("TEXT", [len(payloads), 1], "BYTES")
        text.set_data_from_numpy(np.array([[p] for p in payloads], dtype=np.object_))
        attempt = 0
        while True:
            timeout = self.timeout if until is None else max(min(self.timeout, until - time.monotonic()), 0.001)
            try:
                result = await self.client.infer(self.model, [text], client_timeout=timeout,
                                                 parameters={GROUP_PARAMETER: group} if group else None)
                entities = [json.loads(row[0]) for row in result.as_numpy("ENTITIES")]
                if not with_uncertainty:
                    return entities
                uncertainty = result.as_numpy("UNCERTAINTY")  # None: a model exported before it
                return [TaggedNote(e, None if uncertainty is None else float(uncertainty[i, 0]))
                        for i, e in enumerate(entities)]
            except InferenceServerException as err:
                status = str(err.status())
                if until is None:
                    if status not in RETRYABLE or attempt == self.retries:
                        raise NerRequestError(index, status, err.message(), attempt + 1) from None
                    delay = self.backoff * 2**attempt
                else:
                    left = until - time.monotonic()
                    if status not in RETRYABLE and not (status == "StatusCode.DEADLINE_EXCEEDED" and left <= 0):
                        raise NerRequestError(index, status, err.message(), attempt + 1) from None
                    if left <= 0:
                        raise NerRequestError(index, "StatusCode.UNAVAILABLE", (
                            f"server unavailable after {time.monotonic() - started:.1f}s "
                            f"({attempt + 1} attempts): {err.message()}"), attempt + 1) from None
                    delay = min(self.backoff * 2**attempt, self.max_backoff, left)  # the last try is at the deadline
                await asyncio.sleep(delay)
                attempt += 1

    async def model_version(self) -> int:
        """The newest version of ``model`` the server has loaded (what a record of its answers names)."""
        metadata = await self.client.get_model_metadata(self.model, as_json=True, client_timeout=self.timeout)
        return max(int(v) for v in metadata["versions"])

    async def extract_one(self, note: str | bytes, index: int = 0) -> list[Entity]:
        """Entities of one note; raises NerRequestError."""
        return (await self.infer([_payload(note)], index))[0]

    async def extract(self, notes: Sequence[str | bytes], return_exceptions: bool = False,
                      with_uncertainty: bool = False, group: str | None = None
                      ) -> list[list[Entity] | TaggedNote | NerRequestError]:
        """Entities of each note, in order, ``batch_size`` notes per request. A request refused for a
        bad note is retried note by note, so only the bad note fails; a request the server could not answer
        (UNAVAILABLE past the retries or the deadline) fails every note it carried. With ``return_exceptions``
        each failed note has its own NerRequestError in its place, so every note ends with entities or an
        error; otherwise the first failure is raised. ``with_uncertainty``: each note's
        :class:`~medner.inference.TaggedNote` in place of its entities. ``group``: every note's group
        (:func:`medner.groups.validate_group`; GroupError, before anything is sent, when it is not a label)."""
        group = validate_group(group)
        gate = asyncio.Semaphore(self.concurrency)
        results: list = [None] * len(notes)
        until = self._until()  # one deadline for the whole call

        async def chunk(first: int) -> None:
            part = [_payload(n) for n in notes[first: first + self.batch_size]]
            async with gate:
                try:
                    results[first: first + len(part)] = await self.infer(part, first, until, with_uncertainty, group)
                    return
                except NerRequestError as err:
                    if len(part) == 1 or err.status in RETRYABLE:  # the server, not a note: every note fails
                        if not return_exceptions:
                            raise
                        results[first: first + len(part)] = [
                            NerRequestError(first + offset, err.status, err.reason, err.attempts)
                            for offset in range(len(part))]
                        return
            for offset, payload in enumerate(part):  # isolate the bad note(s)
                async with gate:
                    try:
                        results[first + offset] = (await self.infer([payload], first + offset, until,
                                                                    with_uncertainty, group))[0]
                    except NerRequestError as err:
                        if not return_exceptions:
                            raise
                        results[first + offset] = err

        await asyncio.gather(*(chunk(i) for i in range(0, len(notes), self.batch_size)))
        return results


def _payload(note: str | bytes) -> bytes:
    return note.encode("utf-8") if isinstance(note, str) else note


class NerClient:
    """Synchronous facade over one connection and one event loop, reused call after call (a new
    channel per call cost more than the model at one note):
    ``with NerClient(url) as client: client.extract(notes)``. Use it from one thread."""

    def __init__(self, url: str = DEFAULT_GRPC_URL, **options: object):
        self._loop = asyncio.new_event_loop()
        self._client = self._loop.run_until_complete(self._open(url, options))

    @staticmethod
    async def _open(url: str, options: dict) -> AsyncNerClient:
        return AsyncNerClient(url, **options)  # the gRPC channel binds to the running loop

    def extract(self, notes: Sequence[str | bytes], return_exceptions: bool = False, with_uncertainty: bool = False,
                group: str | None = None) -> list[list[Entity] | TaggedNote | NerRequestError]:
        return self._loop.run_until_complete(self._client.extract(notes, return_exceptions, with_uncertainty, group))

    def model_version(self) -> int:
        return self._loop.run_until_complete(self._client.model_version())

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()

    def __enter__(self) -> NerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
