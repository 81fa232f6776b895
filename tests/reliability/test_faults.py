"""Faults: the server is SIGKILLed under load and restarted on the same ports. In-flight and new calls retry
with capped backoff and fail clearly when their deadline passes; after the restart a client with a long
enough deadline is served again, with the same entities. Prints the measured outage and recovery times."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from clients.ner_client import AsyncNerClient, NerRequestError
from medner.triton import TritonServer, free_ports
from tests.notes import NOTES

pytestmark = pytest.mark.slow

DEADLINE = 2.0  # seconds per call under load
WORKERS = 4


def test_deadline_without_server_fails_clearly() -> None:
    [port] = free_ports(1)

    async def run() -> None:
        async with AsyncNerClient(f"127.0.0.1:{port}", retries=0, deadline=1.0, backoff=0.05, max_backoff=0.2) as c:
            await c.extract_one("asthma")

    with pytest.raises(NerRequestError, match=r"note 0: server unavailable after \d+\.\ds \((\d+) attempts\)") as info:
        asyncio.run(run())
    assert info.value.status == "StatusCode.UNAVAILABLE"
    assert info.value.attempts > 1  # it kept trying until the deadline, not `retries` (0) times
    assert f"({info.value.attempts} attempts)" in str(info.value)


def test_deadline_does_not_retry_bad_notes(triton_server) -> None:
    async def run() -> None:
        async with AsyncNerClient(triton_server.grpc_url, deadline=600.0) as client:
            await client.extract_one(b"\xff")

    with pytest.raises(NerRequestError, match="UTF-8") as info:
        asyncio.run(run())  # refused at once: only UNAVAILABLE is retried
    assert info.value.status == "StatusCode.INVALID_ARGUMENT"


def _server(repository: Path, ports: list[int], log: Path) -> TritonServer:
    grpc_port, http_port, metrics_port = ports
    return TritonServer(repository, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                        log_file=log, extra_args=["--model-control-mode=explicit", "--load-model=ner"])


async def _kill_and_restart(repository: Path, tmp_path: Path) -> dict:
    ports = free_ports(3)
    first = _server(repository, ports, tmp_path / "first.log")
    second = _server(repository, ports, tmp_path / "second.log")  # the restart, on the same ports
    first.start()
    try:
        url = first.grpc_url
        async with AsyncNerClient(url, deadline=DEADLINE, backoff=0.05, max_backoff=0.5) as client:
            expected = await client.extract(NOTES[:4])
            # (phase the call began in: "up", "killing" or "dead", its error or None)
            records: list[tuple[str, NerRequestError | None]] = []
            phase, stop = "up", False

            async def worker(k: int) -> None:
                while not stop:
                    began = phase
                    try:
                        await client.extract_one(NOTES[k % 4])
                        records.append((began, None))
                    except NerRequestError as err:
                        records.append((began, err))

            workers = [asyncio.create_task(worker(k)) for k in range(WORKERS)]
            while sum(err is None for _, err in records) < 20:
                await asyncio.sleep(0.02)
            phase = "killing"  # calls begun from here on may or may not reach the server
            os.killpg(first.process.pid, signal.SIGKILL)  # tritonserver and its python stubs
            await asyncio.to_thread(first.process.wait)
            phase = "dead"  # calls begun from here on cannot reach any server
            while sum(began == "dead" for began, _ in records) < WORKERS:  # each worker has finished one
                await asyncio.sleep(0.05)
            stop = True
            await asyncio.gather(*workers)

        async with AsyncNerClient(url, deadline=300.0, backoff=0.05, max_backoff=0.5) as patient:
            waiting = asyncio.create_task(patient.extract(NOTES[:4]))  # retries while the server is down
            restarting = time.monotonic()
            second.start()  # blocks this loop until ready; the waiting call's retries run after
            ready = time.monotonic()
            served = await waiting
            resumed = time.monotonic()
    finally:
        first.stop()
        second.stop()
    return {"expected": expected, "served": served, "records": records,
            "dead": [err for began, err in records if began == "dead"],
            "in_flight": [err for began, err in records if began == "killing"],
            "restart_s": ready - restarting, "client_lag_s": resumed - ready}


def test_sigkill_under_load_then_restart(exported_repository: Path, tmp_path: Path) -> None:
    outcome = asyncio.run(_kill_and_restart(exported_repository, tmp_path))
    assert len(outcome["dead"]) >= WORKERS
    for err in outcome["dead"]:  # every call begun after the server died failed, after retrying to its deadline
        assert err is not None, "a call was served with no server running"
        assert err.status == "StatusCode.UNAVAILABLE"
        assert "server unavailable after" in str(err) and err.attempts > 1
    for err in outcome["in_flight"]:  # begun while the kill happened: served, or failed the same clear way
        assert err is None or (err.status == "StatusCode.UNAVAILABLE" and "server unavailable after" in str(err))
    assert outcome["served"] == outcome["expected"]  # serving resumed, same entities
    print(f"\nfault: {len(outcome['records'])} calls, {len(outcome['in_flight'])} begun during the SIGKILL, "
          f"{len(outcome['dead'])} begun after it failed at their {DEADLINE}s deadline; restart took "
          f"{outcome['restart_s']:.1f}s, the waiting client was served {outcome['client_lag_s']:+.2f}s after "
          f"the server reported ready")
