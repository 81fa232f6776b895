"""``pip install medner[client]`` alone, in a fresh venv and offline (the wheels `make setup` downloads): the
client imports without torch, Metaflow, ONNX Runtime or moto, and `medner extract --url` tags notes against a
running server exactly as the full install does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clients import NerClient
from tests.notes import NOTES

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / ".venv" / "client-wheels"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not WHEELS.is_dir():
        pytest.fail(f"{WHEELS} is missing: `make setup` downloads the client extra's wheels there")
    work = tmp_path_factory.mktemp("client-extra")
    source = work / "source"  # only what the distribution packages: the checkout's .venv would slow the build
    source.mkdir()
    for item in ("pyproject.toml", "README.md", "medner", "clients", "export", "monitoring"):
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, source / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / item, source / item)
    venv = work / "venv"
    # no pip of its own: this pip installs into it (seconds faster than ensurepip)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-index", "--find-links", str(WHEELS), f"{source}[client]"], check=True)
    return venv


def test_the_client_extra_alone_tags_notes(client_venv: Path, triton_server) -> None:
    python = str(client_venv / "bin" / "python")
    for heavy in ("torch", "metaflow", "onnxruntime", "moto", "transformers", "whylogs"):
        probe = subprocess.run([python, "-c", f"import {heavy}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "No module named" in probe.stderr, f"{heavy} is installed"
    notes = [note for note in NOTES if "\n" not in note][:4]  # stdin: a note per line
    extracted = subprocess.run([str(client_venv / "bin" / "medner"), "extract", "--url", triton_server.grpc_url],
                               input="\n".join(notes) + "\n", capture_output=True, text=True)
    assert extracted.returncode == 0, extracted.stderr
    with NerClient(triton_server.grpc_url) as client:
        expected = client.extract(notes)
    assert [json.loads(line)["entities"] for line in extracted.stdout.splitlines()] == expected
