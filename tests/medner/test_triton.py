"""`medner serve` as a user runs it: its server does not outlive it (ready, loopback only, administrative endpoints
closed and SIGTERM: tests/medner/test_promotion.py, which serves a bucket)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from medner.registry import write_serving_record
from tests.serve import read_until, served_parts, start_medner_serve

pytestmark = pytest.mark.slow


def tritonserver_pid(grpc_port: int) -> int:
    """The pid of the tritonserver listening on ``grpc_port``."""
    rows = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    [pid] = [int(row.split(None, 1)[0]) for row in rows if f"--grpc-port={grpc_port}" in row
             and "bin/tritonserver" in row.split(None, 2)[1]]
    return pid


def test_a_repository_without_a_champion_is_not_served_and_not_written(exported_repository: Path,
                                                                      tmp_path: Path) -> None:
    """No serving.json: `medner serve` names the command that promotes a first champion (gated) and writes
    nothing; the newest version is never served ungated."""
    repository = served_parts(exported_repository, tmp_path / "repository")
    process, _ = start_medner_serve(repository)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2, output
    assert "has no champion recorded in serving.json: promote one (gated) with `medner models promote 1" in output
    assert not (repository / "serving.json").exists()


def test_tritonserver_does_not_outlive_a_killed_medner_serve(exported_repository: Path, tmp_path: Path) -> None:
    import select

    repository = served_parts(exported_repository, tmp_path / "repository")
    write_serving_record(repository, {"version": 1, "previous": [], "history": []})
    process, (grpc_port, _, _) = start_medner_serve(repository)
    try:
        before = read_until(process, "Triton ready")
        assert any("Started GRPCInferenceService" in line for line in before)  # Triton's log: `kubectl logs`
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
