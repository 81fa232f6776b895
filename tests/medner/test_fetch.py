"""`medner data fetch` against a real HTTP server on 127.0.0.1 serving a copy of the corpus."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medner import fetch as fetch_module
from medner.fetch import FetchError, fetch, verify


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A local mirror whose pinned checksums are those of small files written here."""
    root = tmp_path / "mirror"
    root.mkdir()
    pins = {}
    for name in fetch_module.SHA256:
        payload = f"{name}\nfile\n".encode()
        (root / name).write_bytes(payload)
        pins[name] = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(fetch_module, "SHA256", pins)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_downloads_and_verifies(mirror: tuple[Path, str], tmp_path: Path) -> None:
    target = tmp_path / "cache"
    assert sorted(fetch(target, mirror[1])) == sorted(fetch_module.SHA256)
    assert verify(target) == []
    assert fetch(target, mirror[1]) == []


def test_checksum_mismatch_writes_nothing(mirror: tuple[Path, str], tmp_path: Path) -> None:
    root, url = mirror
    (root / "test_label").write_bytes(b"tampered\n")
    target = tmp_path / "cache"
    with pytest.raises(FetchError, match="does not match the pinned"):
        fetch(target, url)
    assert not (target / "test_label").exists()


def test_offline_says_where_to_put_the_files(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match=r"Copy train_sent, train_label, test_sent, test_label into"):
        fetch(tmp_path / "cache", f"http://127.0.0.1:{port}", timeout=2)
