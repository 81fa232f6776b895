"""Download the public BeHealthy corpus into the local cache and verify its checksums."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

#: A public copy pinned to a commit; ``--mirror`` / ``$MEDNER_DATA_MIRROR`` points elsewhere.
DEFAULT_MIRROR = (
    "https://raw.githubusercontent.com/tritammohanty/IdentifyingEntitiesInHealthcareData/"
    "c000dc3cee6d7d258a2adea70a24dc20f3ab915f"
)
MIRROR_ENV = "MEDNER_DATA_MIRROR"
SHA256 = {
    "train_sent": "a97827ab2d6f1d4de3fce99962873ebe6f1d32d99acdeab1df127d1470c36e2c",
    "train_label": "b739150c9d1adee8688d4a57b08084297dddda389614377085f7087ee069c540",
    "test_sent": "ce3b2663b7fc5ad63d18432f95aa74a61b33b10f1aac12337d7820dccd3142e6",
    "test_label": "ec0d8517c4d881a433bdaa9426e9bb7ffd4161c4d7b33867aacda275127b1031",
}


class FetchError(RuntimeError):
    """The corpus could not be downloaded or did not match its checksum."""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(data_dir: Path) -> list[str]:
    """Names of the corpus files in ``data_dir`` that are missing or fail their checksum."""
    return [
        name for name, digest in SHA256.items()
        if not (data_dir / name).is_file() or sha256_of(data_dir / name) != digest
    ]


def fetch(data_dir: Path, mirror: str | None = None, timeout: float = 30.0) -> list[str]:
    """Download each missing or corrupt file into ``data_dir``; returns the names downloaded.

    A file is written only after its SHA-256 matches, so a failed download leaves nothing behind.
    """
    mirror = (mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR).rstrip("/")
    data_dir.mkdir(parents=True, exist_ok=True)
    downloaded = []
    for name in verify(data_dir):
        url = f"{mirror}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as err:
            raise FetchError(
                f"could not download {url} ({getattr(err, 'reason', err)}). Offline? Copy "
                f"{', '.join(SHA256)} into {data_dir} (or set MEDNER_DATA_DIR to a folder holding "
                f"them), or pass --mirror with a reachable copy"
            ) from None
        digest = hashlib.sha256(payload).hexdigest()
        if digest != SHA256[name]:
            raise FetchError(f"{url}: SHA-256 {digest} does not match the pinned {SHA256[name]}")
        partial = data_dir / f".{name}.part"
        partial.write_bytes(payload)
        partial.replace(data_dir / name)
        downloaded.append(name)
    return downloaded
