"""`medner serve` as a user runs it: ready, bound to loopback, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from medner.registry import loaded_versions
from medner.triton import ADMIN_KEY_ENV, free_ports

pytestmark = pytest.mark.slow


ADMIN_KEY = "test-admin-key"


def start_medner_serve(repository: Path) -> tuple[subprocess.Popen, list[int]]:
    """``medner serve`` in a subprocess on free ports; returns it and its (gRPC, HTTP, metrics) ports."""
    ports = free_ports(3)
    command = [sys.executable, "-m", "medner.cli", "serve", "--repository", str(repository)]
    for flag, port in zip(("--grpc-port", "--http-port", "--metrics-port"), ports):
        command += [flag, str(port)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, ADMIN_KEY_ENV: ADMIN_KEY}), ports


def assert_admin_endpoints_need_the_key(grpc_url: str, http_port: int) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(grpc_url)
    assert client.is_model_ready("ner")  # health, metadata and inference stay open
    for call in (client.get_model_repository_index, lambda: client.unload_model("ner"),
                 lambda: client.load_model("ner"), client.get_inference_statistics):
        with pytest.raises(InferenceServerException, match="restricted|[Pp]ermission|admin"):
            call()
    assert client.is_model_ready("ner")  # the refused unload did nothing
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/repository/models/ner/unload",
                                                      data=b"{}", method="POST"), timeout=5)
    assert loaded_versions(grpc_url, ADMIN_KEY) == {"ner": [1], "ner_int8": [1]}  # what `medner models list` reads


def listening_addresses(port: int) -> set[str]:
    """The local addresses listening on ``port`` (``ss -ltn``), once something listens there (Triton reports ready
    on HTTP before its metrics endpoint listens, under load); a port that never opens fails by the timeout."""
    while True:
        listening = [line.split()[3] for line in subprocess.run(["ss", "-ltn"], capture_output=True, text=True
                                                                  ).stdout.splitlines()[1:]]
        addresses = {a.rsplit(":", 1)[0] for a in listening if a.endswith(f":{port}")}
        if addresses:
            return addresses
        time.sleep(0.2)


def test_medner_serve_starts_and_stops_on_sigterm(exported_repository: Path) -> None:
    process, (grpc_port, http_port, metrics_port) = start_medner_serve(exported_repository)
    try:
        line = process.stdout.readline()
        assert "Triton ready" in line and f"127.0.0.1:{grpc_port}" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/ner/ready", timeout=5) as response:
            assert response.status == 200
        for port in (grpc_port, http_port, metrics_port):
            addresses = listening_addresses(port)
            assert addresses and addresses <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, (port, addresses)  # loopback only
        assert_admin_endpoints_need_the_key(f"127.0.0.1:{grpc_port}", http_port)
        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0  # a hang fails through the suite's per-test timeout
    finally:
        if process.poll() is None:
            process.terminate()  # lets `medner serve` stop tritonserver
            process.wait(60)


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
