"""Rolling whylogs profiles of live requests, in a profile store (a local folder or ``s3://bucket/prefix``).

Layout: ``<root>/<model>/<window_start>_<writer>.bin``, one whylogs ``DatasetProfileView`` per window and
writer, ``window_start`` in UTC (``%Y%m%dT%H%M%SZ``, also the profile's dataset timestamp). Several writers
(Triton runs two instances of a model) write the same window; readers merge them (:func:`merge_profiles`).

Profiles hold the numeric features of :mod:`monitoring.features` only, one row per sentence (and, on a
note's first sentence, the note's sentence count, so profiles still count notes): no text, no entity strings.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from medner.config import DEFAULT_PROFILE_WINDOW_SECONDS, PROFILE_WINDOW_ENV, profile_dir
from medner.groups import MAX_GROUPS, pooled
from medner.s3 import s3_client, split_s3_url
from monitoring.features import FEATURES, NOTE_SENTENCES, features_frame
from monitoring.policy import as_utc

log = logging.getLogger(__name__)
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")  # whylogs otherwise calls its analytics host on import

WINDOW_FORMAT = "%Y%m%dT%H%M%SZ"
GROUPS_FOLDER = "groups"  # <root>/<model>/groups/<group>/<window>_<writer>.bin: the model's profiles by group
SEGMENT_KEY = ("group", "model")
PROFILE_NAME = re.compile(r"^(\d{8}T\d{6}Z)_([A-Za-z0-9.-]+)\.bin$")


def window_name(start: float) -> str:
    """The ``window_start`` of file names for a window starting at epoch seconds ``start``."""
    return time.strftime(WINDOW_FORMAT, time.gmtime(start))


def profile_rows(rows: np.ndarray, timestamp: datetime) -> Any:
    """A whylogs ``DatasetProfileView`` of feature rows (``monitoring.features.batch_features``' rows, or rows
    of the :data:`FEATURES` columns alone), dated ``timestamp``."""
    from whylogs.core import DatasetProfile

    profile = DatasetProfile(dataset_timestamp=as_utc(timestamp))
    profile.track(pandas=features_frame(rows))
    return profile.view()


def write_view(view: Any, path: Path | str) -> Path:
    """Write a profile view to a local file atomically (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(view.serialize())
    os.replace(partial, path)
    return path


# --- the store ---------------------------------------------------------------------------------

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


def segment_views(rows: np.ndarray, note_groups: Sequence[str | None], model: str) -> dict[str, Any]:
    """whylogs profiles of feature ``rows`` segmented by the group of each row's note (``note_groups``, one per
    note; rows of notes without a group are left out): group -> ``DatasetProfileView``."""
    import whylogs as why
    from whylogs.core.schema import DatasetSchema
    from whylogs.core.segmentation_partition import ColumnMapperFunction, SegmentationPartition

    frame = features_frame(rows)
    if NOTE_SENTENCES in frame:  # a row per sentence; a note's first sentence carries the note column
        note_of_row = np.cumsum(frame[NOTE_SENTENCES].notna().to_numpy()) - 1
    else:
        note_of_row = np.arange(len(frame))
    frame["group"] = np.asarray(list(note_groups), dtype=object)[note_of_row]
    frame = frame[frame["group"].notna()].assign(model=model)
    if frame.empty:
        return {}
    # whylogs 1.6.4 with pandas 3 cannot segment on one column (its groupby().get_group() gets a scalar key): the
    # key is (group, model), the model constant
    partition = SegmentationPartition(name="group", mapper=ColumnMapperFunction(col_names=list(SEGMENT_KEY)))
    result = why.log(pandas=frame, schema=DatasetSchema(segments={partition.name: partition}))
    return {segment.key[0]: result.view(segment) for segment in result.segments()}


def merge_profiles(locations: Sequence[str | Path], s3_client: Any = None) -> Any:
    """The merge of the profiles at ``locations`` (one ``DatasetProfileView``), or None when there are none."""
    views = [read_profile(location, s3_client) for location in locations]
    return reduce(lambda a, b: a.merge(b), views) if views else None


# --- the rolling writer ------------------------------------------------------------------------

class RollingProfiler:
    """Buffer feature rows in memory and write one whylogs profile per time window.

    :meth:`log` (the serving thread) only appends the rows to a list under a lock; a background thread
    folds them into the window's whylogs profile in bulk (one DataFrame per fold, not a whylogs call per row), every
    ``tick`` seconds or once ``flush_rows`` rows are waiting, and writes each window once it has closed.
    :meth:`close` writes everything, the open window included.

    If the store cannot be written (read-only folder, S3 error) a WARNING is logged (location and error,
    never note data), serving goes on, and the unwritten windows stay in memory (at most
    ``max_pending_windows``; beyond that the oldest is dropped with a WARNING) until a later attempt succeeds.
    """

    def __init__(
        self,
        root: str | Path,
        model: str,
        window_seconds: float = DEFAULT_PROFILE_WINDOW_SECONDS,
        writer: str | None = None,
        flush_rows: int = 5_000,
        max_pending_windows: int = 48,
        background: bool = True,
        clock: Callable[[], float] = time.time,
        s3_client: Any = None,
    ):
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        self.root, self.model, self.window_seconds = str(root), model, float(window_seconds)
        self.writer = re.sub(r"[^A-Za-z0-9.-]", "-", writer or f"{os.getpid()}-{secrets.token_hex(2)}")
        self.flush_rows, self.max_pending_windows = flush_rows, max_pending_windows
        self.clock, self.s3_client = clock, s3_client
        self._lock = threading.Lock()  # guards the buffers (taken by log and by the folding thread)
        self._flush_lock = threading.Lock()  # one flush at a time (background thread, close)
        self._buffers: dict[float, list[tuple[np.ndarray, list[str | None] | None]]] = {}
        self._buffered = 0
        self._profiles: dict[float, Any] = {}  # window start -> its whylogs DatasetProfile (not yet written)
        self._group_views: dict[float, dict[str, Any]] = {}  # window start -> group -> its DatasetProfileView
        self._groups_seen: dict[float, set[str]] = {}  # window start -> its first MAX_GROUPS groups
        self._failing = False
        self.written: list[str] = []  # locations written, for callers and tests
        self.dropped_windows = 0
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name="medner-profiler", daemon=True)
            self._thread.start()

    @property
    def tick(self) -> float:
        """Seconds between background flushes: a few per window, at most 5 s apart."""
        return max(0.2, min(self.window_seconds / 4, 5.0))

    def window_start(self, moment: float) -> float:
        return moment - moment % self.window_seconds

    def log(self, rows: np.ndarray, note_groups: list[str | None] | None = None) -> None:
        """Add feature rows (``batch_features``' rows: one per sentence) to the current window (cheap: no
        whylogs here); ``note_groups``: each note's group (None: the notes have none), for the profiles by group."""
        if len(rows) == 0:
            return
        window = self.window_start(self.clock())
        with self._lock:
            self._buffers.setdefault(window, []).append((rows, note_groups))
            self._buffered += len(rows)
            wake = self._buffered >= self.flush_rows
        if wake:
            self._wake.set()

    def flush(self, final: bool = False) -> list[str]:
        """Fold buffered rows into the windows' profiles and write the closed windows (every window when
        ``final``). Returns the locations written by this call."""
        from whylogs.core import DatasetProfile

        with self._flush_lock:
            with self._lock:
                buffers, self._buffers, self._buffered = self._buffers, {}, 0
            for window, logged in sorted(buffers.items()):
                profile = self._profiles.get(window)
                if profile is None:
                    moment = datetime.fromtimestamp(window, UTC)
                    profile = self._profiles[window] = DatasetProfile(dataset_timestamp=moment)
                profile.track(pandas=features_frame(np.concatenate([rows for rows, _ in logged])))
                self._fold_groups(window, [(rows, groups) for rows, groups in logged if groups is not None])
            now = self.clock()
            due = [w for w in sorted(self._profiles) if final or w + self.window_seconds <= now]
            written = []
            for window in due:
                try:
                    written += self._write_window(window)
                except Exception as err:  # noqa: BLE001 - any store failure: keep serving, keep the data
                    self._store_failed(err)
                    break
            else:
                if due and self._failing:
                    log.warning("profile store %s is writable again; pending windows written", self._where())
                    self._failing = False
            self._drop_excess()
            self.written += written
            return written

    def _fold_groups(self, window: float, logged: list[tuple[np.ndarray, list[str | None]]]) -> None:
        """Fold rows whose notes have groups into the window's profiles by group (whylogs segments); groups past
        the window's first MAX_GROUPS are pooled as ``other``."""
        if not logged:
            return
        seen = self._groups_seen.setdefault(window, set())
        notes = [pooled(groups, seen, MAX_GROUPS) for _, groups in logged]
        views = self._group_views.setdefault(window, {})
        for group, view in segment_views(np.concatenate([rows for rows, _ in logged]),
                                         [g for groups in notes for g in groups], self.model).items():
            views[group] = views[group].merge(view) if group in views else view

    def _write_window(self, window: float) -> list[str]:
        """Write a closed window: its profiles by group, then the model's own (the file readers wait for)."""
        name = f"{window_name(window)}_{self.writer}.bin"
        written = []
        for group, view in sorted(self._group_views.get(window, {}).items()):
            written.append(store_put(self.root, group_folder(self.model, group), name, view.serialize(),
                                     self.s3_client))
            del self._group_views[window][group]  # written: a retry after a failure does not write it twice
        written.append(store_put(self.root, self.model, name, self._profiles[window].view().serialize(),
                                 self.s3_client))
        del self._profiles[window]
        self._group_views.pop(window, None)
        self._groups_seen.pop(window, None)
        return written

    def _where(self) -> str:
        return _join(self.root.rstrip("/"), self.model)

    def _store_failed(self, err: Exception) -> None:
        pending = sum(1 for w in self._profiles if w + self.window_seconds <= self.clock())
        if not self._failing:  # one warning per outage, not one per tick
            log.warning("cannot write profiles to %s (%s: %s); serving goes on, %d closed window(s) kept in "
                        "memory (at most %d)", self._where(), type(err).__name__, err, pending,
                        self.max_pending_windows)
        self._failing = True

    def _drop_excess(self) -> None:
        closed = sorted(w for w in self._profiles if w + self.window_seconds <= self.clock())
        for window in closed[: max(0, len(closed) - self.max_pending_windows)]:
            del self._profiles[window]
            self._group_views.pop(window, None)
            self._groups_seen.pop(window, None)
            self.dropped_windows += 1
            log.warning("profile window %s of %s dropped: store unwritable and %d windows already pending",
                        window_name(window), self.model, self.max_pending_windows)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the profiler must never take the server down
                log.exception("profile flush failed")

    def close(self) -> list[str]:
        """Stop the background thread and write every window, the open one included."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.flush(final=True)

    def __enter__(self) -> RollingProfiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def profiler_from_env(model: str, writer: str | None = None) -> RollingProfiler | None:
    """The profiler the served models run: on when ``$MEDNER_PROFILE_DIR`` is set (a folder or ``s3://``
    root), window ``$MEDNER_PROFILE_WINDOW_SECONDS`` (default 300)."""
    root = profile_dir()
    if not root:
        return None
    window = float(os.environ.get(PROFILE_WINDOW_ENV) or DEFAULT_PROFILE_WINDOW_SECONDS)
    return RollingProfiler(root, model, window, writer)


__all__ = ["FEATURES", "RollingProfiler", "list_profiles", "merge_profiles", "profile_rows", "read_profile",
           "profiler_from_env", "write_view"]
