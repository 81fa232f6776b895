"""gRPC client for the ``ner`` ensemble.

Each note travels as its own request (Triton's dynamic batcher regroups them on the server), so a
bad note fails alone. Requests run concurrently up to ``concurrency``; UNAVAILABLE answers (server
starting, restarting, overloaded) are retried with exponential backoff until ``retries`` runs out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import numpy as np

from medner.inference import Entity

RETRYABLE = {"StatusCode.UNAVAILABLE"}


class NerRequestError(RuntimeError):
    """The server refused or failed one note; ``index`` is its position in the call."""

    def __init__(self, index: int, status: str, message: str):
        self.index, self.status = index, status
        super().__init__(f"note {index}: {message}")


class AsyncNerClient:
    """``async with AsyncNerClient("127.0.0.1:8001") as client: await client.extract(notes)``."""

    def __init__(self, url: str = "127.0.0.1:8001", model: str = "ner", timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.2, concurrency: int = 16):
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url)
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.concurrency = concurrency

    async def __aenter__(self) -> AsyncNerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.close()

    async def extract_one(self, note: str | bytes, index: int = 0) -> list[Entity]:
        """Entities of one note; raises NerRequestError."""
        from tritonclient.utils import InferenceServerException

        payload = note.encode("utf-8") if isinstance(note, str) else note
        text = self._grpc.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[payload]], dtype=np.object_))
        for attempt in range(self.retries + 1):
            try:
                result = await self.client.infer(self.model, [text], client_timeout=self.timeout)
                return json.loads(result.as_numpy("ENTITIES")[0][0])
            except InferenceServerException as err:
                status = str(err.status())
                if status not in RETRYABLE or attempt == self.retries:
                    raise NerRequestError(index, status, err.message()) from None
                await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    async def extract(self, notes: Sequence[str | bytes], return_exceptions: bool = False
                      ) -> list[list[Entity] | NerRequestError]:
        """Entities of each note, in order. With ``return_exceptions`` a failed note yields its
        NerRequestError in place; otherwise the first failure is raised."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(index: int, note: str | bytes) -> list[Entity]:
            async with gate:
                return await self.extract_one(note, index)

        return await asyncio.gather(*(one(i, n) for i, n in enumerate(notes)), return_exceptions=return_exceptions)


class NerClient:
    """Synchronous facade: ``NerClient(url).extract(notes)``."""

    def __init__(self, url: str = "127.0.0.1:8001", **options: object):
        self.url, self.options = url, options

    def extract(self, notes: Sequence[str | bytes], return_exceptions: bool = False
                ) -> list[list[Entity] | NerRequestError]:
        async def run() -> list[list[Entity] | NerRequestError]:
            async with AsyncNerClient(self.url, **self.options) as client:  # type: ignore[arg-type]
                return await client.extract(notes, return_exceptions)

        return asyncio.run(run())
