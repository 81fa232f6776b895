"""The profile store: a local folder or ``s3://bucket/prefix`` holding whylogs profiles of live requests.

Layout: ``<root>/<model>/<window_start>_<writer>.bin``, one whylogs ``DatasetProfileView`` per window and
writer, ``window_start`` in UTC (``%Y%m%dT%H%M%SZ``, also the profile's dataset timestamp), and the profiles of each
group of notes (:mod:`medner.groups`) at ``<root>/<model>/groups/<group>/<window_start>_<writer>.bin``. Several
writers (Triton runs two instances of a model) write the same window; readers merge them (:func:`merge_profiles`).
:mod:`monitoring.profiles` writes them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from datetime import datetime
from functools import reduce
from pathlib import Path
from typing import Any

from medner.s3 import s3_client, split_s3_url
from monitoring.policy import as_utc

WINDOW_FORMAT = "%Y%m%dT%H%M%SZ"
GROUPS_FOLDER = "groups"  # <root>/<model>/groups/<group>/<window>_<writer>.bin: the model's profiles by group
PROFILE_NAME = re.compile(r"^(\d{8}T\d{6}Z)_([A-Za-z0-9.-]+)\.bin$")


def window_name(start: float) -> str:
    """The ``window_start`` of file names for a window starting at epoch seconds ``start``."""
    return time.strftime(WINDOW_FORMAT, time.gmtime(start))


def write_view(view: Any, path: Path | str) -> Path:
    """Write a profile view to a local file atomically (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(view.serialize())
    os.replace(partial, path)
    return path


def _s3_client(client: Any = None) -> Any:
    return client if client is not None else s3_client()


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def store_put(root: str | Path, model: str, name: str, data: bytes, s3_client: Any = None) -> str:
    """Write one profile file into the store; returns its location."""
    root = str(root)
    if root.startswith("s3://"):
        bucket, prefix = split_s3_url(root)
        key = _join(prefix, model, name)
        _s3_client(s3_client).put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"
    path = Path(root) / model / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return str(path)


def list_profiles(root: str | Path, model: str, start: datetime, end: datetime, s3_client: Any = None) -> list[str]:
    """Profile files of ``model`` whose window starts in ``[start, end)`` (naive datetimes are UTC): local
    paths or ``s3://`` URIs, oldest window first."""
    low, high = window_name(as_utc(start).timestamp()), window_name(as_utc(end).timestamp())
    root = str(root)
    if root.startswith("s3://"):
        bucket, prefix = split_s3_url(root)
        folder = _join(prefix, model) + "/"
        pages = _s3_client(s3_client).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder,
                                                                                 Delimiter="/")  # not groups/
        names = [(o["Key"].rsplit("/", 1)[-1], f"s3://{bucket}/{o['Key']}") for page in pages
                 for o in page.get("Contents", [])]
    else:
        folder_path = Path(root) / model
        names = [(p.name, str(p)) for p in folder_path.glob("*.bin")] if folder_path.is_dir() else []
    found = []
    for name, location in names:
        match = PROFILE_NAME.match(name)
        if match and low <= match.group(1) < high:  # the fixed-width format sorts as time does
            found.append((match.group(1), location))
    return [location for _, location in sorted(found)]


def list_groups(root: str | Path, model: str, s3_client: Any = None) -> list[str]:
    """The groups ``model`` has profiles of in the store (:func:`group_folder`), sorted."""
    root = str(root)
    if root.startswith("s3://"):
        bucket, prefix = split_s3_url(root)
        folder = _join(prefix, model, GROUPS_FOLDER) + "/"
        pages = _s3_client(s3_client).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder,
                                                                                 Delimiter="/")
        return sorted(p["Prefix"][len(folder):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", []))
    folder_path = Path(root) / model / GROUPS_FOLDER
    return sorted(p.name for p in folder_path.iterdir() if p.is_dir()) if folder_path.is_dir() else []


def read_profile(location: str | Path, s3_client: Any = None) -> Any:
    """The ``DatasetProfileView`` in a local file or at an ``s3://`` URI."""
    from whylogs.core import DatasetProfileView

    location = str(location)
    if location.startswith("s3://"):
        bucket, key = split_s3_url(location)
        client = _s3_client(s3_client)
        try:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no profile at {location}") from None
    else:
        data = Path(location).read_bytes()  # DatasetProfileView.read opens for writing: fails on read-only files
    return DatasetProfileView.deserialize(data)


def group_folder(model: str, group: str) -> str:
    """Where the profiles of ``group``'s notes lie under a store root, beside the model's own (all notes)."""
    return f"{model}/{GROUPS_FOLDER}/{group}"


def merge_profiles(locations: Sequence[str | Path], s3_client: Any = None) -> Any:
    """The merge of the profiles at ``locations`` (one ``DatasetProfileView``), or None when there are none."""
    views = [read_profile(location, s3_client) for location in locations]
    return reduce(lambda a, b: a.merge(b), views) if views else None
