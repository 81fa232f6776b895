"""Rolling whylogs profiles of live requests, written into a profile store (:mod:`monitoring.profile_store`: a local
folder or ``s3://bucket/prefix``), one per time window and writer, and one per group of notes beside it.

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
from pathlib import Path
from typing import Any

import numpy as np

from medner.config import DEFAULT_PROFILE_WINDOW_SECONDS, PROFILE_WINDOW_ENV, profile_dir
from medner.groups import MAX_GROUPS, pooled
from monitoring.features import FEATURES, NOTE_SENTENCES, features_frame
from monitoring.policy import as_utc
from monitoring.profile_store import group_folder, store_put, window_name

log = logging.getLogger(__name__)
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")  # whylogs otherwise calls its analytics host on import
SEGMENT_KEY = ("group", "model")


def profile_rows(rows: np.ndarray, timestamp: datetime) -> Any:
    """A whylogs ``DatasetProfileView`` of feature rows (``monitoring.features.batch_features``' rows, or rows
    of the :data:`FEATURES` columns alone), dated ``timestamp``."""
    from whylogs.core import DatasetProfile

    profile = DatasetProfile(dataset_timestamp=as_utc(timestamp))
    profile.track(pandas=features_frame(rows))
    return profile.view()


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
        return f"{self.root.rstrip('/')}/{self.model}"

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


__all__ = ["FEATURES", "RollingProfiler", "profile_rows", "profiler_from_env", "segment_views"]
