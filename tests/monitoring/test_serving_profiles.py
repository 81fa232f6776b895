"""Profiling inside the served models: notes through a real Triton server end up as numbers in rolling
profiles (one row per sentence, notes counted), and a distinctive marker in the notes appears in no profile,
log, metric or error message."""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.ner_client import NerClient
from medner.spans import split_sentences, split_words
from medner.triton import TritonServer
from monitoring.drift import note_count, sentence_count
from monitoring.profile_store import group_folder, list_groups, list_profiles, merge_profiles, read_profile

pytestmark = pytest.mark.slow
MARKER = "Zqxmarker7731"
NOTES = [
    f"{MARKER} presented with {MARKER}itis and was treated with {MARKER}mab.",
    f"Patients with breast cancer ({MARKER}) were treated with tamoxifen and radiotherapy.",
    f"Type 2 diabetes was managed with metformin. Contact: {MARKER}@example.org",
]
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def profiled_notes(root: Path, model: str, since: datetime) -> int:
    return note_count(merge_profiles(list_profiles(root, model, since, FAR_FUTURE)))


def wait_for_notes(root: Path, model: str, since: datetime, count: int) -> int:
    """Poll until at least ``count`` notes are in written profiles (an event, not a duration: a hang fails by the
    suite's per-test timeout); returns how many there are."""
    while (seen := profiled_notes(root, model, since)) < count:
        time.sleep(0.2)
    return seen


def sentence_extents(notes: list[str]) -> list[int]:
    """Characters of each sentence of ``notes``, as the served model splits them."""
    extents = []
    for note in notes:
        words = split_words(note)
        extents += [words[end - 1][1] - words[first][0] for first, end in split_sentences(note, words)]
    return extents


def refused_messages(url: str) -> list[str]:
    """Error messages of requests the server refuses, each note carrying the marker."""
    client = grpcclient.InferenceServerClient(url)
    messages = []
    bad_utf8, too_long = f"{MARKER} ".encode() + b"\xff\xfe broken", (f"{MARKER} " * 90_000).encode()
    for payload in (bad_utf8, too_long):
        text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[payload]], dtype=np.object_))
        with pytest.raises(InferenceServerException) as refused:
            client.infer("ner", [text])
        messages.append(str(refused.value))
    client.close()
    return messages


@pytest.fixture(scope="module")
def profiled_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server of this module's own, profiling into 2-second windows: no other test's traffic (the session
    server's profiles hold every test's) lands in the windows this module counts."""
    folder = tmp_path_factory.mktemp("profiled")
    with TritonServer.on_free_ports(exported_repository, log_file=folder / "server.log",
                                    profile_dir=str(folder / "profiles"), profile_window_seconds=2.0) as server:
        yield server


def test_marker_appears_in_no_profile_log_metric_or_error(profiled_server) -> None:
    root = Path(profiled_server.profile_dir)
    since = datetime.fromtimestamp(time.time() - 2.0, UTC)  # the window these requests land in, or later
    for model in ("ner", "ner_int8"):
        with NerClient(profiled_server.grpc_url, model=model) as client:
            assert len(client.extract(NOTES * 4)) == len(NOTES) * 4
    messages = refused_messages(profiled_server.grpc_url)
    assert "not valid UTF-8" in messages[0] and "limit" in messages[1]

    for model in ("ner", "ner_int8"):  # profiled: closed 2 s windows are written while the server runs
        assert wait_for_notes(root, model, since, len(NOTES) * 4) >= len(NOTES) * 4
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".bin" for p in files)
    view = merge_profiles(list_profiles(root, "ner", since, FAR_FUTURE))
    # one row per sentence, notes still counted (other tests' traffic may share the window: lower bounds only)
    assert note_count(view) >= len(NOTES) * 4
    assert sentence_count(view) - note_count(view) >= (len(sentence_extents(NOTES)) - len(NOTES)) * 4 > 0
    assert view.get_column("chars").to_summary_dict()["distribution/max"] >= max(sentence_extents(NOTES))

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{profiled_server.metrics_port}/metrics", timeout=10).read()
    assert b'nv_inference_request_success{model="ner"' in metrics  # the real metrics text
    log = Path(profiled_server.log_file).read_bytes()
    for blob in [*(p.read_bytes() for p in files), log, metrics, *(m.encode() for m in messages)]:
        assert MARKER.encode() not in blob and MARKER.lower().encode() not in blob.lower()


def test_requests_with_a_group_are_profiled_by_group_and_a_bad_group_fails_alone(profiled_server) -> None:
    root = Path(profiled_server.profile_dir)
    since = datetime.fromtimestamp(time.time() - 2.0, UTC)
    with NerClient(profiled_server.grpc_url) as client:
        assert all(isinstance(r, list) for r in client.extract(NOTES * 4, group="clinic_a"))
        assert all(isinstance(r, list) for r in client.extract(NOTES * 2, group="clinic_b"))
        client.extract(NOTES * 2)  # no group: profiled with all notes only, as before groups existed
    grpc = grpcclient.InferenceServerClient(profiled_server.grpc_url)
    text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[NOTES[1].encode()]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as refused:  # note text as a group: refused, not echoed
        grpc.infer("ner", [text], parameters={"group": NOTES[0]})
    assert "bad group parameter" in str(refused.value) and MARKER not in str(refused.value)
    assert grpc.infer("ner", [text], parameters={"group": "clinic_b"}).as_numpy("ENTITIES").shape == (1, 1)
    grpc.close()

    assert wait_for_notes(root, group_folder("ner", "clinic_a"), since, len(NOTES) * 4) >= len(NOTES) * 4
    assert wait_for_notes(root, group_folder("ner", "clinic_b"), since, len(NOTES) * 2 + 1) >= len(NOTES) * 2 + 1
    assert wait_for_notes(root, "ner", since, len(NOTES) * 8 + 1) >= len(NOTES) * 8 + 1  # every note, grouped or not
    assert set(list_groups(root, "ner")) >= {"clinic_a", "clinic_b"}
    for path in (root / "ner" / "groups").rglob("*.bin"):
        assert MARKER.encode() not in path.read_bytes() and MARKER.lower().encode() not in path.read_bytes().lower()


def ner_only_server(exported_repository: Path, tmp_path: Path, **options: object):
    """A server of the ner model alone (starts and stops faster than all six), profiling to tmp_path/profiles."""
    from medner.triton import TritonServer

    repository = tmp_path / "repository"
    (repository / "ner" / "1").mkdir(parents=True)
    (repository / "ner" / "config.pbtxt").symlink_to(exported_repository / "ner" / "config.pbtxt")
    for item in (exported_repository / "ner" / "1").iterdir():
        (repository / "ner" / "1" / item.name).symlink_to(item)
    return TritonServer.on_free_ports(repository, log_file=tmp_path / "server.log",
                                      profile_dir=str(tmp_path / "profiles"), **options)


def test_profiles_flushed_on_shutdown(exported_repository: Path, tmp_path: Path) -> None:
    server = ner_only_server(exported_repository, tmp_path)
    with server:  # 300 s windows: nothing is written before shutdown
        with NerClient(server.grpc_url) as client:
            client.extract(NOTES)
        assert not list((tmp_path / "profiles").rglob("*.bin"))
    assert profiled_notes(tmp_path / "profiles", "ner", datetime(2000, 1, 1, tzinfo=UTC)) == len(NOTES)
    assert MARKER.encode() not in (tmp_path / "server.log").read_bytes()


def one_request(url: str, notes: list[str]) -> None:
    """Send ``notes`` in a single request: one execution of the model, so one profiler call and one window."""
    client = grpcclient.InferenceServerClient(url)
    text = grpcclient.InferInput("TEXT", [len(notes), 1], "BYTES")
    text.set_data_from_numpy(np.array([[n.encode()] for n in notes], dtype=np.object_))
    client.infer("ner", [text])
    client.close()


def test_sigkill_loses_only_the_window_in_flight(exported_repository: Path, tmp_path: Path) -> None:
    import os
    import signal

    store, since = tmp_path / "profiles", datetime(2000, 1, 1, tzinfo=UTC)
    with ner_only_server(exported_repository, tmp_path, profile_window_seconds=2) as server:
        with NerClient(server.grpc_url) as client:
            client.extract(NOTES)  # batch A: written by the profiler's thread once its window(s) close
        assert wait_for_notes(store, "ner", since, len(NOTES)) == len(NOTES)
        closed = {p: p.read_bytes() for p in store.rglob("*.bin")}  # A's windows, as written while serving
        one_request(server.grpc_url, NOTES * 2)  # batch B: one window, most likely still open at the kill
        os.killpg(server.process.pid, signal.SIGKILL)  # the server and its python-backend stubs
        server.process.wait(30)
    # no timing assumption: read the windows the notes actually landed in
    after = {p: p.read_bytes() for p in store.rglob("*.bin")}
    assert all(after.get(p) == data for p, data in closed.items())  # closed windows survive the kill intact
    assert sum(note_count(read_profile(p)) for p in closed) == len(NOTES)
    landed = [note_count(read_profile(p)) for p in after if p not in closed]
    # B is all in one window: lost whole if that window was open at the kill (the usual case), or written
    # whole if it had closed and been flushed first; never half a window, never a corrupt file
    assert sum(landed) in (0, 2 * len(NOTES)) and len(landed) <= 1
    assert profiled_notes(store, "ner", since) == len(NOTES) + sum(landed)
