"""ExtractFlow end to end: a folder of 1,000+ notes into SQLite and PostgreSQL, every note once (entities or an
error row); run again, nothing is added; a worker killed mid-shard is retried (@retry) and still every note is
stored exactly once; through a real Triton server with --url."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from records.store import RecordError, RecordNote, RecordsStore
from tests.aws import TEST_CREDENTIALS, aws
from tests.conftest import synthetic_sentences
from tests.flows.conftest import card_data

pytestmark = pytest.mark.slow

BAD = {"empty.txt": b"", "latin1.txt": "caf\xe9 note".encode("latin-1"), "huge.txt": b"word " * 1_000_000}


def _archive(folder: Path, count: int) -> int:
    """``count`` notes of 1-3 synthetic sentences, three bad files and a JSONL line without text; returns the
    number of notes."""
    folder.mkdir()
    sentences = [" ".join(s.tokens) for s in synthetic_sentences(count * 3, seed=9)]
    for i in range(count):
        (folder / f"note{i:05}.txt").write_text(" ".join(sentences[3 * i: 3 * i + 1 + i % 3]))
    for name, payload in BAD.items():
        (folder / name).write_bytes(payload)
    (folder / "lines.jsonl").write_text('{"id": "j1", "text": "Asthma."}\n{"id": "j2", "txt": "typo"}\n')
    return count + len(BAD) + 2


def _stored(url: str) -> tuple[int, int, int]:
    """Rows of notes, error rows, and distinct notes among both."""
    store = RecordsStore(url, upgrade=False)
    with store.session() as s:
        notes = s.execute(select(RecordNote.note_id)).scalars().all()
        errors = s.execute(select(RecordError.note_id)).scalars().all()
    store.close()
    return len(notes), len(errors), len(set(notes) | set(errors))


def test_a_folder_into_the_store_once_then_again_adds_nothing(flow_runner, exported_repository: Path,
                                                              store_url: str, tmp_path: Path) -> None:
    total = _archive(tmp_path / "archive", 1000)
    args = ["--notes", str(tmp_path / "archive"), "--db", store_url, "--repository", str(exported_repository),
            "--shard-notes", "400", "--threads", "1", "--max-workers", "2"]
    flow_runner.run("extract_flow.py", *args)
    notes, errors, distinct = _stored(store_url)
    assert (notes, errors, distinct) == (total - 4, 4, total)  # three bad files and the line without text

    result = flow_runner.client(
        "run = Flow('ExtractFlow').latest_successful_run\n"
        "from metaflow.cards import get_cards\n"
        "result = {'totals': run.data.totals, 'shards': run.data.shard_stats, 'model': run.data.model_version,\n"
        "          'card': get_cards(run['end'].task)[0].get()}")
    assert [s["notes"] for s in result["shards"]] == [400, 400, total - 800] and result["model"] == 1
    assert result["totals"]["extracted"] == total - 4 and result["totals"]["errors"] == 4
    card = str(card_data(result["card"]))
    assert f"Records: {total} notes" in card and "notes/s" in card

    flow_runner.run("extract_flow.py", *args)
    again = flow_runner.client("run = Flow('ExtractFlow').latest_successful_run\nresult = run.data.totals")
    assert (again["skipped"], again["extracted"], again["errors"]) == (total, 0, 0)
    assert _stored(store_url) == (notes, errors, distinct)


def _is_extract_task(process: psutil.Process) -> bool:
    try:
        command = process.cmdline()
    except psutil.NoSuchProcess:  # a short-lived helper that ended while being listed
        return False
    return "step" in command and "extract" in command


def test_a_worker_killed_mid_shard_is_retried_and_stores_every_note_exactly_once(flow_runner, exported_repository: Path,
                                                                                 tmp_path: Path) -> None:
    total = _archive(tmp_path / "archive", 1200)
    url = f"sqlite:///{tmp_path / 'records.db'}"
    args = ["--notes", str(tmp_path / "archive"), "--db", url, "--repository", str(exported_repository),
            "--shard-notes", "700", "--batch-size", "10", "--threads", "1", "--max-workers", "1"]
    flow = subprocess.Popen(flow_runner.command("extract_flow.py", *args), cwd=flow_runner.root, env=flow_runner.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        worker = None
        while worker is None:  # the first shard's worker, once it has committed a batch (the pytest timeout bounds it)
            assert flow.poll() is None, "the flow ended before a worker could be killed"
            workers = [p for p in psutil.Process(flow.pid).children(recursive=True) if _is_extract_task(p)]
            if workers and (tmp_path / "records.db").exists() and sum(_stored(url)[:2]) >= 10:
                worker = workers[0]
        stored = sum(_stored(url)[:2])
        worker.send_signal(signal.SIGKILL)
        assert flow.wait() == 0  # the shard's next attempt goes on where the killed one stopped
    finally:
        flow.kill()
        flow.wait()
    assert 10 <= stored < 700  # killed mid-shard: some batches stored, the rest of the shard not
    notes, errors, distinct = _stored(url)
    assert (notes + errors, distinct) == (total, total)  # every note once: none lost, none twice
    attempts = flow_runner.client(
        "result = sorted(t.current_attempt for t in Flow('ExtractFlow').latest_run['extract'])")
    assert attempts == [0, 1]  # two shards, the killed one on its second attempt


def test_through_triton_with_url(flow_runner, triton_server, tmp_path: Path) -> None:
    total = _archive(tmp_path / "archive", 30)
    url = f"sqlite:///{tmp_path / 'records.db'}"
    flow_runner.run("extract_flow.py", "--notes", str(tmp_path / "archive"), "--db", url, "--url",
                    triton_server.grpc_url)
    assert _stored(url) == (total - 4, 4, total)
    store = RecordsStore(url)
    with store.session() as s:
        assert set(s.scalars(select(RecordNote.model)).all()) == {"ner"}
        assert s.scalar(select(func.max(RecordNote.model_version))) == 1
    store.close()


def test_an_s3_prefix_without_notes_is_one_line_not_a_traceback(flow_runner, moto_endpoint: str, tmp_path: Path
                                                                 ) -> None:
    aws(moto_endpoint, "s3").create_bucket(Bucket="archive")
    flow_runner.env.update({**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint})
    proc = flow_runner.run("extract_flow.py", "--notes", "s3://archive/2026/notes", "--db",
                           f"sqlite:///{tmp_path / 'records.db'}", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "s3://archive/2026/notes: no .txt or .jsonl objects under this prefix" in output
    assert "Traceback" not in output
