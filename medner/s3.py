"""Model repositories on S3 (``s3://BUCKET/PREFIX``), worked on through a local mirror; the S3 helpers the
project shares (URL parsing, the client).

The registry, export and promotion work on folders. :func:`opened` mirrors an S3 repository into a cache
folder (downloading only objects whose ETag changed since the last time), lets the caller work on the mirror,
and when the block ends without an error writes back what changed, in an order that is safe for a server
reading the bucket: new and changed files first, ``serving.json`` next, with a conditional write (``If-Match``
the ETag it was read with, ``If-None-Match: *`` when there was none) so two promotions that raced cannot
overwrite each other's record, and deleted version folders last. Triton reads the same repository from S3
itself (:func:`triton_location`). A local folder passes through unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from medner.config import cache_dir

SERVING_KEY = "serving.json"  # medner.registry.SERVING_FILE (the registry imports this module, not the reverse)
METADATA_FILES = ("lineage.json",)  # the version files a metadata-only mirror downloads


class S3Unavailable(OSError):
    """An S3 repository that cannot be read or written (credentials, endpoint, bucket, permissions)."""


class VersionConflict(RuntimeError):
    """Another export wrote a version of the same number between this command's read and its write."""


class ServingConflict(RuntimeError):
    """serving.json changed on S3 between this command's read and its write (another promotion or rollback)."""


def is_s3(location: str | Path) -> bool:
    return str(location).startswith("s3://")


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"); ValueError without a bucket."""
    bucket, _, prefix = str(url).removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{url}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def s3_client(endpoint_url: str | None = None) -> Any:
    """boto3's S3 client; it reads AWS_ENDPOINT_URL, credentials and region from the environment."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)


def triton_location(url: str, endpoint_url: str | None = None) -> str:
    """The ``--model-repository`` Triton reads ``url`` from: ``s3://bucket/prefix`` on AWS; with an endpoint
    (``$AWS_ENDPOINT_URL``, e.g. a moto or MinIO server) Triton's own form ``s3://HOST:PORT/bucket/prefix``
    (``s3://https://HOST:PORT/...`` for TLS). Credentials come from the server's AWS_* environment."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return url
    parsed = urlparse(endpoint)
    host = f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    return f"s3://{'https://' if parsed.scheme == 'https' else ''}{host}/{url.removeprefix('s3://')}"


def _version_folder(relative: str) -> str | None:
    """``ner/3/model.onnx`` -> ``ner/3``; None for files outside a version folder (configs, serving.json)."""
    parts = relative.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else None


class S3Mirror:
    """One S3 repository's mirror under ``root``: :meth:`pull` makes the folder match the bucket, :meth:`push`
    writes the folder's changes back."""

    def __init__(self, url: str, root: Path, client: Any = None):
        self.url, self.root = url, root
        self.bucket, self.prefix = split_s3_url(url)
        self.client = client or s3_client()
        self.listing: dict[str, str] = {}  # relative key -> ETag, as last pulled
        self.manifest: dict[str, dict[str, Any]] = {}  # what was downloaded: its ETag and local [size, mtime]
        self.manifest_file = root.parent / f".{root.name}.manifest.json"  # beside the mirror: the mirror is the bucket

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _list(self) -> dict[str, str]:
        start = f"{self.prefix}/" if self.prefix else ""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                found[item["Key"][len(start):]] = item["ETag"]
        return found

    def _stat(self, path: Path) -> list[int]:
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def _local_files(self) -> dict[str, Path]:
        return {p.relative_to(self.root).as_posix(): p for p in self.root.rglob("*") if p.is_file()}

    def pull(self, full: bool = True) -> Path:
        """Make the mirror match the bucket: every object (``full``), or the metadata only (configs, model code,
        ``serving.json``, each version's ``lineage.json``, and a folder per version: enough to list versions,
        read lineage and load a version on a server that reads S3 itself). Returns the mirror folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = json.loads(self.manifest_file.read_text()) if self.manifest_file.exists() else {}
        self.listing = self._list()
        for relative, path in self._local_files().items():  # changed on S3, gone from S3, or left by a crash
            known = self.manifest.get(relative)
            if (not known or known["etag"] != self.listing.get(relative) or known["stat"] != self._stat(path)):
                path.unlink()
                self.manifest.pop(relative, None)
        folders = {f for f in map(_version_folder, self.listing) if f}
        for folder in self.root.glob("*/[0-9]*"):  # version folders deleted on S3
            if folder.is_dir() and folder.relative_to(self.root).as_posix() not in folders:
                shutil.rmtree(folder)
        for folder in folders:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        for relative, etag in sorted(self.listing.items()):
            wanted = full or _version_folder(relative) is None or relative.rsplit("/", 1)[-1] in METADATA_FILES
            path = self.root / relative
            if not wanted or (relative in self.manifest and path.exists()):
                continue
            self._download(relative, etag)
        self._save_manifest()
        return self.root

    def fetch(self, versions: Iterable[int]) -> None:
        """Download the files of ``versions`` (every model's folder of each) that the mirror does not have yet:
        a metadata-only mirror made whole where a command needs the model files (promotion's smoke test)."""
        wanted = {str(v) for v in versions}
        for relative, etag in sorted(self.listing.items()):
            folder = _version_folder(relative)
            path = self.root / relative
            if folder and folder.split("/")[1] in wanted and not (relative in self.manifest and path.exists()):
                self._download(relative, etag)
        self._save_manifest()

    def _download(self, relative: str, etag: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        self.client.download_file(self.bucket, self._key(relative), str(partial))
        partial.replace(path)
        self.manifest[relative] = {"etag": etag, "stat": self._stat(path)}

    def _save_manifest(self) -> None:
        self.manifest = {k: v for k, v in self.manifest.items() if k in self.listing}
        self.manifest_file.write_text(json.dumps(self.manifest))

    def push(self) -> list[str]:
        """Upload new and changed files, then ``serving.json`` (conditionally), then delete the objects of version
        folders removed here. Returns the keys written or deleted. A new version's ``lineage.json`` goes first and
        only where absent: VersionConflict, before any of its files, when another export took that number since
        :meth:`pull`. ServingConflict when serving.json changed on S3 since then (files uploaded before it stay:
        new versions are harmless)."""
        changed = []
        local = self._local_files()
        on_s3 = {folder for relative in self.listing if (folder := _version_folder(relative))}
        claims = {relative for relative in local if _version_folder(relative) not in on_s3 | {None}
                  and relative.rsplit("/", 1)[-1] in METADATA_FILES}  # claim the new version numbers first
        for relative, path in sorted(local.items(), key=lambda item: (item[0] == SERVING_KEY, item[0] not in claims)):
            known = self.manifest.get(relative)
            if known and known["stat"] == self._stat(path):
                continue
            if relative == SERVING_KEY:
                self._put_serving(path)
            elif relative in claims:
                self._claim_version(relative, path)
            else:
                self.client.upload_file(str(path), self.bucket, self._key(relative))
            changed.append(relative)
        for relative in sorted(self.listing):
            folder = _version_folder(relative)
            removed_here = relative in self.manifest or (folder and not (self.root / folder).is_dir())
            if relative not in local and removed_here:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(relative))
                changed.append(relative)
        if changed:  # the new ETags: the mirror is current again
            self.listing = self._list()
            for relative in changed:
                path = self.root / relative
                if path.exists() and relative in self.listing:
                    self.manifest[relative] = {"etag": self.listing[relative], "stat": self._stat(path)}
            self._save_manifest()
        return changed

    def _claim_version(self, relative: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(relative), Body=path.read_bytes(),
                                   IfNoneMatch="*")
        except ClientError as err:
            if _is_precondition_failure(err):
                raise VersionConflict(
                    f"{self.url}: another export wrote version {relative.split('/')[1]} since this command read the "
                    "repository; none of this export's files were uploaded: export again") from None
            raise

    def _put_serving(self, path: Path) -> None:
        from botocore.exceptions import ClientError

        previous = self.listing.get(SERVING_KEY)
        condition = {"IfMatch": previous} if previous else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(SERVING_KEY), Body=path.read_bytes(),
                                   ContentType="application/json", **condition)
        except ClientError as err:
            if _is_precondition_failure(err):
                raise ServingConflict(
                    f"{self.url}/{SERVING_KEY} changed since this command read it (another promotion or rollback "
                    "at the same time): its record was not written; `medner models list` shows the current state"
                ) from None
            raise


def _is_precondition_failure(err: Exception) -> bool:
    """A conditional write S3 refused: the object changed (or appeared) since it was read."""
    return err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict")


def mirror_folder(url: str) -> Path:
    """Where the mirror of ``url`` lives: medner's cache folder, by bucket and prefix."""

    bucket, prefix = split_s3_url(url)
    return cache_dir() / "repositories" / bucket / (prefix or "_root")


_OPEN: dict[Path, S3Mirror] = {}  # the mirrors opened() holds now, by folder (for fetch_versions)


@contextmanager
def opened(location: str | Path, *, full: bool = True, read_only: bool = False) -> Iterator[Path]:
    """The repository at ``location`` as a folder: a local one as it is; an S3 one as its mirror (pulled
    ``full``, or metadata only: :func:`fetch_versions` adds a version's files), locked against other medner
    processes on this machine, and pushed back when the block ends without an error (never ``read_only``: a
    server's role, which may not write the bucket)."""
    if not is_s3(location):
        yield Path(location)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    mirror = S3Mirror(str(location), mirror_folder(str(location)))
    mirror.root.mkdir(parents=True, exist_ok=True)
    with open(mirror.root.parent / f".{mirror.root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one medner process at a time on this mirror
        _OPEN[mirror.root] = mirror
        try:
            try:
                folder = mirror.pull(full=full)
            except (BotoCoreError, ClientError) as err:
                raise S3Unavailable(f"cannot read {location}: {err}") from err
            yield folder
            if read_only:
                return
            try:
                mirror.push()
            except (BotoCoreError, ClientError) as err:
                raise S3Unavailable(f"cannot write {location} (nothing of this command's changes may have "
                                    f"reached it): {err}") from err
        finally:
            del _OPEN[mirror.root]


def fetch_versions(folder: Path, versions: Iterable[int]) -> None:
    """Inside :func:`opened`, download the model files of ``versions`` into an S3 repository's mirror (a local
    repository has them already: nothing to do)."""
    if folder in _OPEN:
        _OPEN[folder].fetch(versions)
