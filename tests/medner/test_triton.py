"""`medner serve` as a user runs it: its server does not outlive it (ready, loopback only, administrative endpoints
closed and SIGTERM: tests/medner/test_promotion.py, which serves a bucket)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.serve import start_medner_serve

pytestmark = pytest.mark.slow


def tritonserver_pid(grpc_port: int) -> int:
    """The pid of the tritonserver listening on ``grpc_port``."""
    rows = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    [pid] = [int(row.split(None, 1)[0]) for row in rows if f"--grpc-port={grpc_port}" in row
             and "bin/tritonserver" in row.split(None, 2)[1]]
    return pid


def test_tritonserver_does_not_outlive_a_killed_medner_serve(exported_repository: Path) -> None:
    import select

    process, (grpc_port, _, _) = start_medner_serve(exported_repository)
    try:
        assert "Triton ready" in process.stdout.readline()
        server = os.pidfd_open(tritonserver_pid(grpc_port))  # a handle that becomes readable when it exits
        try:
            process.kill()  # SIGKILL: `medner serve` cannot clean up; the parent-death signal must stop the server
            process.wait()
            select.select([server], [], [])  # returns when tritonserver has exited (else the test times out)
        finally:
            os.close(server)
        assert f"--grpc-port={grpc_port}" not in subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                                                text=True).stdout
    finally:
        if process.poll() is None:
            process.terminate()  # lets `medner serve` stop tritonserver
            process.wait(60)


def test_an_installed_triton_replaces_the_bundled_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """NVIDIA's images (deploy/Dockerfile) run their own /opt/tritonserver: its binary, its backends (onnxruntime,
    TensorRT, a python backend for the image's Python), none of the bundled server's libraries."""
    from medner.triton import TRITON_HOME_ENV, TritonServer

    server = TritonServer(tmp_path, source="s3://models/ner")
    bundled = server.command(tmp_path / "backends")
    assert "nvidia_pytriton.libs" in server.environment()["LD_LIBRARY_PATH"]
    monkeypatch.setenv(TRITON_HOME_ENV, "/opt/tritonserver")
    command = server.command(Path("/opt/tritonserver/backends"))
    assert command[0] == "/opt/tritonserver/bin/tritonserver" != bundled[0]
    assert {"--model-repository=s3://models/ner", "--backend-directory=/opt/tritonserver/backends"} <= set(command)
    assert "nvidia_pytriton.libs" not in server.environment().get("LD_LIBRARY_PATH", "")
