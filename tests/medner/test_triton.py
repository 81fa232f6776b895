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


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_triton_s_own_grpc_tls_through_medner_serve(exported_repository: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton flags pass through `medner serve --triton-arg`: with gRPC TLS on (a self-signed certificate for
    127.0.0.1), medner's own calls (loading the champion at start, `medner models list`, clients) speak TLS with
    $MEDNER_GRPC_CA_FILE; a client without it gets no answer."""
    from clients.ner_client import NerClient
    from medner.config import GRPC_CA_ENV
    from medner.registry import loaded_versions
    from tests.serve import ADMIN_KEY

    cert, key = self_signed(tmp_path, "server")
    repository = served_parts(exported_repository, tmp_path / "repository")
    write_serving_record(repository, {"version": 1, "previous": [], "history": []})
    monkeypatch.setenv(GRPC_CA_ENV, str(cert))  # the server's own calls and this test's
    process, (grpc_port, _, _) = start_medner_serve(
        repository, "--triton-arg=--grpc-use-ssl=true", f"--triton-arg=--grpc-server-cert={cert}",
        f"--triton-arg=--grpc-server-key={key}", "--no-follow")
    url = f"127.0.0.1:{grpc_port}"
    try:
        read_until(process, "Triton ready")  # the champion was loaded over TLS
        assert loaded_versions(url, ADMIN_KEY) == {"ner": [1], "ner_int8": [1]}
        with NerClient(url) as client:
            [tagged] = client.extract(["Asthma was treated with inhaled steroids."], return_exceptions=True)
        assert isinstance(tagged, list), tagged  # entities (the untrained model's), not an error
        monkeypatch.delenv(GRPC_CA_ENV)
        with NerClient(url, timeout=10, retries=0) as client:  # plain gRPC to a TLS port
            [answer] = client.extract(["Asthma was treated with inhaled steroids."], return_exceptions=True)
        assert isinstance(answer, Exception)
    finally:
        process.terminate()
        process.wait(60)


def test_mutual_tls_medner_s_calls_present_the_client_certificate(exported_repository: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With client certificates required (`--grpc-use-ssl-mutual=true`), medner's own calls present the one in
    $MEDNER_GRPC_CERT_FILE / $MEDNER_GRPC_KEY_FILE: the server loads its champion and a client is answered; a client
    that checks the server but has no certificate of its own gets no answer."""
    from clients.ner_client import NerClient
    from medner.config import GRPC_CA_ENV, GRPC_CERT_ENV, GRPC_KEY_ENV

    server_cert, server_key = self_signed(tmp_path, "server")
    client_cert, client_key = self_signed(tmp_path, "client")
    repository = served_parts(exported_repository, tmp_path / "repository")
    write_serving_record(repository, {"version": 1, "previous": [], "history": []})
    for name, value in ((GRPC_CA_ENV, server_cert), (GRPC_CERT_ENV, client_cert), (GRPC_KEY_ENV, client_key)):
        monkeypatch.setenv(name, str(value))  # the server's own calls and this test's
    process, (grpc_port, _, _) = start_medner_serve(
        repository, "--triton-arg=--grpc-use-ssl=true", "--triton-arg=--grpc-use-ssl-mutual=true",
        f"--triton-arg=--grpc-server-cert={server_cert}", f"--triton-arg=--grpc-server-key={server_key}",
        f"--triton-arg=--grpc-root-cert={client_cert}", "--no-follow")
    url = f"127.0.0.1:{grpc_port}"
    note = "Asthma was treated with inhaled steroids."
    try:
        read_until(process, "Triton ready")  # the champion was loaded with the client certificate
        with NerClient(url) as client:
            [tagged] = client.extract([note], return_exceptions=True)
        assert isinstance(tagged, list), tagged
        monkeypatch.delenv(GRPC_CERT_ENV)
        monkeypatch.delenv(GRPC_KEY_ENV)
        with NerClient(url, timeout=10, retries=0) as client:  # TLS, the server checked, no client certificate
            [answer] = client.extract([note], return_exceptions=True)
        assert isinstance(answer, Exception)
    finally:
        process.terminate()
        process.wait(60)
