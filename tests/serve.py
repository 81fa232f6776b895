"""`medner serve` in a subprocess, and what every served repository must show: loopback only, administrative
endpoints closed to requests without the admin key."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from medner.registry import loaded_versions, write_serving_record
from medner.triton import free_ports
from medner.triton_control import ADMIN_KEY_ENV

ADMIN_KEY = "test-admin-key"


def start_medner_serve(repository: str | Path, *options: str) -> tuple[subprocess.Popen, list[int]]:
    """``medner serve`` of a folder or s3:// repository (and ``options``) in a subprocess on free ports; returns it
    and its (gRPC, HTTP, metrics) ports. Its output holds Triton's log too: :func:`read_until` reads it."""
    ports = free_ports(3)
    command = [sys.executable, "-m", "medner.cli", "serve", "--repository", str(repository), *options]
    for flag, port in zip(("--grpc-port", "--http-port", "--metrics-port"), ports):
        command += [flag, str(port)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, ADMIN_KEY_ENV: ADMIN_KEY}), ports


def read_until(process: subprocess.Popen, text: str) -> list[str]:
    """The lines ``process`` prints up to the first that holds ``text`` (it is the last); fails with its output
    when it ends first (a line that never comes fails by the suite's per-test timeout)."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"{text!r} never came; the process printed:\n{''.join(lines)}")


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


def served_parts(exported_repository: Path, repository: Path) -> Path:
    """The session's version 1 in a new ``repository`` (hard links), with what clients call (ner, ner_int8) and
    the lineage holder (ner_encoder) only, one instance each: the GPU ensemble's parts and a second instance would
    only make every server start, load and upload slower."""
    shutil.copytree(exported_repository, repository, copy_function=os.link,
                    ignore=shutil.ignore_patterns("ner_tokenize", "ner_decode*", "ner_encoder_int8", "serving.json"))
    for config in repository.glob("*/config.pbtxt"):
        text = config.read_text()
        config.unlink()  # a hard link into the session's repository: write a file of its own
        config.write_text(re.sub(r"count: \d+", "count: 1", text))
    return repository


def beatable_champion(exported_repository: Path, repository: Path) -> Path:
    """:func:`served_parts` with version 1 the recorded champion, its test F1 claimed to be -1 (any trained model
    beats it: the quality gate passes)."""
    served_parts(exported_repository, repository)
    lineage_file = repository / "ner_encoder" / "1" / "lineage.json"
    record = json.loads(lineage_file.read_text())
    record["metrics_fp32"]["entity_f1"] = -1.0
    lineage_file.unlink()
    lineage_file.write_text(json.dumps(record))
    write_serving_record(repository, {"version": 1, "previous": [], "history": []})
    return repository


def served_version_gauge(metrics_port: int) -> dict[str, int]:
    """``medner_served_version`` on a server's Triton metrics endpoint, as the divergence rule reads it: model ->
    the newest version its instances report (a retiring version reports until its instances finish)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    found: dict[str, int] = {}
    for line in lines:
        if line.startswith("medner_served_version{"):
            model = line.split('model="', 1)[1].split('"', 1)[0]
            found[model] = max(found.get(model, 0), int(float(line.rsplit(" ", 1)[1])))
    return found
