"""Rolling whylogs profiles: windows, writers, merge, sentence rows and note counts, an unwritable store, and S3
(a moto server)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from monitoring.drift import note_count, sentence_count
from monitoring.features import FEATURES, PROFILE_COLUMNS, batch_features
from monitoring.profile_store import list_profiles, merge_profiles, read_profile, window_name
from monitoring.profiles import RollingProfiler
from monitoring.vocabulary import Vocabulary
from tests.aws import TEST_CREDENTIALS, aws

T0 = 300.0 * 5_800_000  # a window start: 2025-02-19T21:20:00Z


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def rows(n: int, chars: float) -> np.ndarray:
    """Profile rows of ``n`` notes of one sentence each."""
    out = np.random.default_rng(n).random((n, len(PROFILE_COLUMNS)))
    out[:, 0], out[:, -1] = chars, 1
    return out


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def chars_summary(view) -> dict:
    return view.get_column("chars").to_summary_dict()


def test_rolling_windows_writers_and_merge(tmp_path: Path) -> None:
    clock = Clock(T0 + 10)
    first = RollingProfiler(tmp_path, "ner", 300, writer="w1", background=False, clock=clock)
    second = RollingProfiler(tmp_path, "ner", 300, writer="w2", background=False, clock=clock)
    first.log(rows(3, 100.0))
    second.log(rows(4, 200.0))
    assert first.flush() == [] and list_profiles(tmp_path, "ner", utc(0), utc(T0 + 600)) == []  # window still open
    clock.now = T0 + 301
    first.log(rows(2, 50.0))  # the next window
    [written] = first.flush()
    assert Path(written).name == f"{window_name(T0)}_w1.bin" and window_name(T0) == "20250219T212000Z"
    assert second.close() and first.close()  # close writes the open window too

    window = list_profiles(tmp_path, "ner", utc(T0), utc(T0 + 300))
    assert [Path(p).name.split("_")[1] for p in window] == ["w1.bin", "w2.bin"]  # two writers, one window
    merged = merge_profiles(window)
    assert chars_summary(merged)["counts/n"] == 7 and chars_summary(merged)["distribution/mean"] == pytest.approx(
        (3 * 100 + 4 * 200) / 7)
    assert merged.dataset_timestamp == utc(T0)
    assert set(merged.get_columns()) == set(PROFILE_COLUMNS)
    assert note_count(merged) == sentence_count(merged) == 7
    later = list_profiles(tmp_path, "ner", utc(T0 + 300), utc(T0 + 900))
    assert len(later) == 1 and chars_summary(read_profile(later[0]))["counts/n"] == 2
    assert len(list_profiles(tmp_path, "ner", datetime(2000, 1, 1), datetime(2100, 1, 1))) == 3  # naive = UTC
    assert list_profiles(tmp_path, "ner_int8", utc(0), utc(T0 + 900)) == [] and merge_profiles([]) is None


SENTENCES = [
    "Asthma was treated with inhaled steroids.",
    "Type 2 diabetes was managed with metformin; hypertension with beta blockers.",
    "No evidence of migraine after surgery!",
    "Fever persisted for three days despite paracetamol.",
    "Follow-up in two weeks.",
]


def test_profiled_distribution_does_not_depend_on_packaging(tmp_path: Path) -> None:
    """The same sentences sent one per note, or grouped into notes (prose or one per line), give the same
    profile of every scored feature through the serving writer; only the note count differs."""
    from transformers import AutoTokenizer

    from medner.config import default_base_model
    from medner.inference import tokenize_notes
    from medner.spans import split_words

    tokenizer = AutoTokenizer.from_pretrained(default_base_model())
    rng = np.random.default_rng(4)
    labels = [list(rng.choice(["O", "D", "T"], len(split_words(s)))) for s in SENTENCES]
    confidences = [rng.random(len(split_words(s))) for s in SENTENCES]
    packagings = {"alone": [[k] for k in range(5)], "prose": [[0, 1, 2], [3, 4]], "lines": [[0, 1, 2, 3, 4]]}
    views = {}
    for name, groups in packagings.items():
        notes = [(" " if name != "lines" else "\n").join(SENTENCES[k] for k in group) for group in groups]
        batch = tokenize_notes(tokenizer, notes)
        note_rows = batch_features(notes, batch, [sum((labels[k] for k in g), []) for g in groups],
                                   [np.concatenate([confidences[k] for k in g]) for g in groups],
                                   tokenizer.unk_token_id, Vocabulary({"asthma", "was", "with"}))
        profiler = RollingProfiler(tmp_path / name, "ner", 300, writer="w", background=False, clock=Clock(T0))
        profiler.log(note_rows)
        [written] = profiler.close()
        views[name] = read_profile(written)
    for name, view in views.items():
        assert sentence_count(view) == len(SENTENCES)
        assert note_count(view) == len(packagings[name])
        for column in FEATURES:  # every scored feature: identical summaries, whatever the packaging
            assert view.get_column(column).to_summary_dict() == views["alone"].get_column(column).to_summary_dict()


def test_background_thread_writes_closed_windows(tmp_path: Path) -> None:
    profiler = RollingProfiler(tmp_path, "ner", window_seconds=0.5)
    profiler.log(rows(5, 10.0))
    while not profiler.written:  # the event itself; a thread that never writes fails by the per-test timeout
        time.sleep(0.1)
    profiler.close()
    assert sum(chars_summary(read_profile(p))["counts/n"] for p in profiler.written) == 5


def test_unwritable_store_warns_keeps_serving_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "store"
    store.write_text("a file where the store folder should be")  # unwritable even for root
    clock = Clock(T0 + 1)
    profiler = RollingProfiler(store, "ner", 300, writer="w", background=False, clock=clock, max_pending_windows=2)
    with caplog.at_level(logging.WARNING, logger="monitoring.profiles"):
        for k in range(4):  # four windows while the store is down
            profiler.log(rows(k + 1, 1000.0 + k))
            clock.now += 300
            assert profiler.flush() == []
    failures = [r for r in caplog.records if "cannot write profiles" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING  # one warning per outage
    assert profiler.dropped_windows == 2  # beyond the cap, the oldest windows go
    assert all("1000.0" not in r.getMessage() and "1003" not in r.getMessage() for r in caplog.records)

    caplog.clear()
    store.unlink()  # the store comes back
    with caplog.at_level(logging.WARNING, logger="monitoring.profiles"):
        written = profiler.flush()
    assert [Path(p).name for p in written] == [f"{window_name(T0 + 600)}_w.bin", f"{window_name(T0 + 900)}_w.bin"]
    assert [chars_summary(read_profile(p))["counts/n"] for p in written] == [3, 4]
    assert any("writable again" in r.getMessage() for r in caplog.records)


def test_profiles_to_s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for key, value in {"AWS_ENDPOINT_URL": moto_endpoint, **TEST_CREDENTIALS}.items():
        monkeypatch.setenv(key, value)  # as a server would be configured: boto3 reads these
    clock = Clock(T0 + 5)
    profiler = RollingProfiler("s3://medner-profiles/live", "ner_int8", 300, writer="w", background=False,
                               clock=clock)
    profiler.log(rows(6, 42.0))
    clock.now += 300
    with caplog.at_level(logging.WARNING, logger="monitoring.profiles"):
        assert profiler.flush() == []  # no bucket yet: an S3 error, kept in memory
    assert any("cannot write profiles to s3://medner-profiles/live/ner_int8" in r.getMessage() for r in caplog.records)

    s3 = aws(moto_endpoint, "s3")
    s3.create_bucket(Bucket="medner-profiles")
    profiler.log(rows(1, 7.0))
    assert profiler.flush() == [f"s3://medner-profiles/live/ner_int8/{window_name(T0)}_w.bin"]
    assert profiler.close() == [f"s3://medner-profiles/live/ner_int8/{window_name(T0 + 300)}_w.bin"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="medner-profiles")["Contents"]]
    assert keys == [f"live/ner_int8/{window_name(T0)}_w.bin", f"live/ner_int8/{window_name(T0 + 300)}_w.bin"]

    found = list_profiles("s3://medner-profiles/live", "ner_int8", utc(T0), utc(T0 + 300))
    assert found == [f"s3://medner-profiles/live/ner_int8/{window_name(T0)}_w.bin"]
    assert chars_summary(merge_profiles(found))["distribution/mean"] == pytest.approx(42.0)
    everything = list_profiles("s3://medner-profiles/live", "ner_int8", utc(0), utc(T0 + 900))
    assert chars_summary(merge_profiles(everything))["counts/n"] == 7
