"""A server that follows the registry: the repository's ``serving.json`` is the desired state, and every
``medner serve --follow`` (the default) converges its own Triton to it.

Each poll reads the record only when it changed (S3: a GET with ``If-None-Match`` the ETag it last saw, answered
304 while nothing changed; a folder: the file's size and modification time). When the recorded champion differs
from the version the server runs, the server switches to it through its own model control
(:func:`medner.triton_control.switch_version`: every model pinned to the version, with the GPU or CPU configs the
server started with; on a failed load, the models that had moved go back to the version it ran, reported, and not
retried until the record names another version). Promotion and rollback are record writes
(:mod:`medner.promotion`); the server a command talks to converges at once, the others within one poll period. A
follower only reads: the serving role needs no write access to the bucket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medner.config import DEFAULT_FOLLOW_SECONDS
from medner.registry import SERVING_FILE, loaded_versions
from medner.s3 import is_s3, opened, s3_client, split_s3_url
from medner.triton_control import VersionLoadError, switch_version


@dataclass
class Follower:
    """Polls the record of the repository at ``location`` (a folder or ``s3://bucket/prefix``) and converges the
    server at ``url`` (admin key ``key``, GPU configs or not: ``gpu``), which serves ``served`` now."""

    location: str
    url: str
    key: str
    served: int
    gpu: bool = False
    interval: float = DEFAULT_FOLLOW_SECONDS
    report: Callable[[str], None] = print  # one line per change: what the server serves now, or why not
    _seen: object = field(default=None, init=False)  # the record's ETag (S3) or (size, mtime) (folder)
    _refused: int | None = field(default=None, init=False)  # a version that failed to load here, until it changes

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` seconds until ``stop`` is set; errors are reported and the next poll tries
        again (a registry that cannot be read leaves the server as it is)."""
        while not stop.wait(self.interval):
            try:
                self.poll()
            except Exception as err:  # noqa: BLE001 - a follower must outlive a bad poll; the message says why
                self.report(f"follow: this poll failed, the server is as it was ({type(err).__name__}: {err})")

    def poll(self) -> int | None:
        """One poll: the recorded champion when the record changed since the last poll, else None; the server is
        switched to it when it differs from what it serves."""
        wanted = self._changed_record()
        if wanted is None:
            return None
        version = wanted.get("version")
        if version is None or int(version) in (self.served, self._refused):
            return version
        version = int(version)
        if set(loaded_versions(self.url, self.key).get("ner", [])) != {version}:  # not switched by the promoter
            with opened(self.location, full=False, read_only=True) as folder:  # configs and version folders
                try:
                    switch_version(self.url, self.key, folder, version, self.served, self.gpu)
                except VersionLoadError as err:
                    self._refused = version
                    self.report(f"follow: {err}")
                    return version
        self.report(f"follow: now serving v{version} (was v{self.served})")
        self.served, self._refused = version, None
        return version

    def _changed_record(self) -> dict | None:
        """``serving.json`` when it changed since the last call (None: unchanged, or absent)."""
        if is_s3(self.location):
            from botocore.exceptions import ClientError

            bucket, prefix = split_s3_url(self.location)
            key = f"{prefix}/{SERVING_FILE}" if prefix else SERVING_FILE
            condition = {"IfNoneMatch": self._seen} if self._seen else {}
            try:
                answer = s3_client().get_object(Bucket=bucket, Key=key, **condition)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("304", "NotModified", "NoSuchKey"):
                    return None
                raise
            self._seen = answer["ETag"]
            return json.loads(answer["Body"].read())
        path = Path(self.location) / SERVING_FILE
        if not path.exists():
            return None
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) == self._seen:
            return None
        self._seen = (stat.st_size, stat.st_mtime_ns)
        return json.loads(path.read_text())
