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

    started = time.monotonic()
    with pytest.raises(NerRequestError, match=r"note 0: server unavailable after \d+\.\ds \((\d+) attempts\)") as info:
        asyncio.run(run())
    assert time.monotonic() - started >= 1.0  # it kept trying until the deadline, not `retries` times
    assert info.value.status == "StatusCode.UNAVAILABLE"
    assert int(str(info.value).split("(")[1].split()[0]) > 1


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
    await asyncio.to_thread(first.start)
    try:
        url = first.grpc_url
        async with AsyncNerClient(url, deadline=DEADLINE, backoff=0.05, max_backoff=0.5) as client:
            expected = await client.extract(NOTES[:4])
            records: list[tuple[float, float, NerRequestError | None]] = []
            stop = False

            async def worker(k: int) -> None:
                while not stop:
                    began = time.monotonic()
                    try:
                        await client.extract_one(NOTES[k % 4])
                        records.append((began, time.monotonic(), None))
                    except NerRequestError as err:
                        records.append((began, time.monotonic(), err))

            workers = [asyncio.create_task(worker(k)) for k in range(WORKERS)]
            while sum(err is None for *_, err in records) < 20:
                await asyncio.sleep(0.02)
            killed = time.monotonic()
            os.killpg(first.process.pid, signal.SIGKILL)  # tritonserver and its python stubs
            await asyncio.to_thread(first.process.wait)
            await asyncio.sleep(DEADLINE + 1.0)  # every call in flight at the kill has passed its deadline
            stop = True
            await asyncio.gather(*workers)

        async with AsyncNerClient(url, deadline=300.0, backoff=0.05, max_backoff=0.5) as patient:
            waiting = asyncio.create_task(patient.extract(NOTES[:4]))  # retries while the server is down
            restarting = time.monotonic()
            await asyncio.to_thread(second.start)
            ready = time.monotonic()
            served = await waiting
            resumed = time.monotonic()
    finally:
        first.stop()
        second.stop()
    after_kill = [r for r in records if r[1] > killed]
    return {"expected": expected, "served": served, "records": records, "after_kill": after_kill,
            "in_flight": [r for r in after_kill if r[0] < killed], "killed": killed,
            "restart_s": ready - restarting, "client_lag_s": resumed - ready, "outage_s": resumed - killed}


def test_sigkill_under_load_then_restart(exported_repository: Path, tmp_path: Path) -> None:
    outcome = asyncio.run(_kill_and_restart(exported_repository, tmp_path))
    assert outcome["after_kill"], "no call ran after the kill"
    for began, ended, err in outcome["after_kill"]:
        assert err is not None, "a call was served by a killed server"
        assert err.status == "StatusCode.UNAVAILABLE"
        assert "server unavailable after" in str(err) and "attempts" in str(err)
        assert ended - began >= DEADLINE  # retried until its deadline
    assert outcome["served"] == outcome["expected"]  # serving resumed, same entities
    print(f"\nfault: {len(outcome['records'])} calls, {len(outcome['in_flight'])} in flight at SIGKILL, "
          f"{len(outcome['after_kill'])} failed after their {DEADLINE}s deadline; restart took "
          f"{outcome['restart_s']:.1f}s, the waiting client was served {outcome['client_lag_s']:+.2f}s after "
          f"the server reported ready; outage (kill -> served) {outcome['outage_s']:.1f}s")
