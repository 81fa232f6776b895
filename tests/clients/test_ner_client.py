from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clients import AsyncNerClient, NerClient, NerRequestError
from clients.local import LocalNerModel
from medner.cli import app
from medner.inference import NoteError
from medner.triton import free_ports
from tests.notes import NOTES

pytestmark = pytest.mark.slow


def test_sync_client_matches_in_process(triton_server, exported_repository) -> None:
    with NerClient(triton_server.grpc_url) as client:
        assert client.extract(NOTES) == LocalNerModel(exported_repository).extract(NOTES)


def test_clients_answer_each_note_s_uncertainty_when_asked(triton_server, exported_repository) -> None:
    local = LocalNerModel(exported_repository).extract(NOTES, with_uncertainty=True)
    with NerClient(triton_server.grpc_url) as client:
        served = client.extract([*NOTES, ""], return_exceptions=True, with_uncertainty=True)
    assert isinstance(served[-1], NerRequestError)  # a bad note still fails alone
    assert [s.entities for s in served[:-1]] == [n.entities for n in local] == LocalNerModel(
        exported_repository).extract(NOTES)
    assert [s.uncertainty for s in served[:-1]] == pytest.approx([n.uncertainty for n in local], abs=1e-6)


def test_bad_notes_fail_alone(triton_server) -> None:
    notes = [NOTES[0], "", NOTES[1], b"\xc3\x28"]
    results = NerClient(triton_server.grpc_url).extract(notes, return_exceptions=True)
    assert isinstance(results[0], list) and isinstance(results[2], list)
    assert isinstance(results[1], NerRequestError) and results[1].index == 1 and "empty" in str(results[1])
    assert isinstance(results[3], NerRequestError) and "UTF-8" in str(results[3])
    with pytest.raises(NerRequestError, match="note (1: .*note is empty|3: .*UTF-8)"):  # whichever fails first
        NerClient(triton_server.grpc_url).extract(notes)
    local = LocalNerModel.__new__(LocalNerModel)  # validation happens before any model is needed
    local.max_note_chars = 10
    with pytest.raises(NoteError, match="note 0: note is empty"):
        local.extract([" "])


def test_concurrent_clients(triton_server, exported_repository) -> None:
    expected = LocalNerModel(exported_repository).extract(NOTES[:4])
    outcomes: list = []

    def worker() -> None:
        outcomes.append(NerClient(triton_server.grpc_url, concurrency=8).extract(NOTES[:4] * 5))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == [expected * 5] * 4


def test_unavailable_server_is_retried_then_reported() -> None:
    [port] = free_ports(1)

    async def run():
        async with AsyncNerClient(f"127.0.0.1:{port}", retries=2, backoff=0.05, timeout=5) as client:
            return await client.extract_one("asthma")

    with pytest.raises(NerRequestError, match="note 0") as info:
        asyncio.run(run())
    assert info.value.status == "StatusCode.UNAVAILABLE"
    assert info.value.attempts == 3  # the first try and two retries


def test_server_down_every_note_gets_its_own_error() -> None:
    [port] = free_ports(1)  # nothing listens there
    with NerClient(f"127.0.0.1:{port}", retries=1, backoff=0.01, batch_size=4) as client:
        results = client.extract([f"note {n} with asthma" for n in range(10)], return_exceptions=True)
    assert len(results) == 10
    for index, result in enumerate(results):  # 3 requests (4 + 4 + 2 notes), each note its own error
        assert isinstance(result, NerRequestError), (index, result)
        assert result.index == index and result.status == "StatusCode.UNAVAILABLE"
        assert str(result).startswith(f"note {index}: ")


def test_cli_extract_names_every_failed_note(tmp_path: Path) -> None:
    [port] = free_ports(1)
    notes_file = tmp_path / "notes.txt"
    notes_file.write_text("".join(f"note {n} with asthma\n" for n in range(10)))
    result = CliRunner().invoke(app, ["extract", str(notes_file), "--url", f"127.0.0.1:{port}", "--timeout", "2"])
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == [f"{notes_file}:{n}" for n in range(1, 11)]
    assert all("failed to connect" in r["error"] for r in rows), rows
    assert "entities" not in {key for r in rows for key in r}
    assert f"10 of 10 notes failed: {notes_file}:1, {notes_file}:2" in result.stderr
    assert f"{notes_file}:10" in result.stderr


def test_cli_extract_url_and_local_agree(triton_server, exported_repository, tmp_path: Path) -> None:
    notes_file = tmp_path / "notes.txt"
    notes_file.write_text("\n".join([NOTES[0], NOTES[2], NOTES[3]]) + "\n\n")  # one note per line
    runner = CliRunner()
    served = runner.invoke(app, ["extract", str(notes_file), "--url", triton_server.grpc_url])
    local = runner.invoke(app, ["extract", str(notes_file), "--local", str(exported_repository)])
    assert served.exit_code == 0 and local.exit_code == 0, served.output + local.output
    assert served.stdout == local.stdout
    rows = [json.loads(line) for line in served.stdout.splitlines()]
    assert [r["id"] for r in rows] == [f"{notes_file}:{n}" for n in (1, 2, 3)]
    table = runner.invoke(app, ["extract", str(notes_file), "--url", triton_server.grpc_url, "--format", "table"])
    assert table.exit_code == 0 and all(line.count("\t") == 4 for line in table.stdout.splitlines())


def test_cli_extract_reports_failed_notes(triton_server, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text(NOTES[0])
    (folder / "b.txt").write_bytes(b"\xff\xfe")
    result = CliRunner().invoke(app, ["extract", str(folder), "--url", triton_server.grpc_url])
    assert result.exit_code == 1 and "1 of 2 notes failed" in result.stderr
    rows = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert "entities" in rows["a.txt"] and "UTF-8" in rows["b.txt"]["error"]
