"""The smoke gate with real Triton servers: a version whose GPU configs do not load is refused, though its CPU
configs serve it well."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medner.promotion_gates import smoke_gate

pytestmark = pytest.mark.slow


def test_the_smoke_gate_serves_the_gpu_configs_too(exported_repository: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(exported_repository, repository, copy_function=os.link,
                    ignore=shutil.ignore_patterns("serving.json"))
    passed = smoke_gate(repository, 1)
    assert passed.passed and "(CPU configs and GPU configs)" in passed.detail, passed.detail

    decoder = repository / "ner_decode" / "configs" / "gpu.pbtxt"
    text = decoder.read_text()
    decoder.unlink()  # a hard link into the session's repository: write a file of its own
    decoder.write_text(text.replace('name: "input_ids"', 'name: "token_ids"'))  # the ensemble's wiring broken
    refused = smoke_gate(repository, 1)
    assert not refused.passed and "with its GPU configs" in refused.detail, refused.detail
    assert "ner_decode" in refused.detail  # the log line that names the model which failed
