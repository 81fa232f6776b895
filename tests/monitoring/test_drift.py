"""Drift scores and levels on synthetic feature rows logged with whylogs, and ``medner monitor check``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import whylogs as why
from typer.testing import CliRunner

from medner.cli import app
from monitoring.drift import DEFAULT_THRESHOLDS, DriftReport, DriftThresholds, compare, note_count, sentence_count
from monitoring.features import DISTANCE_FEATURES, FEATURES, MEAN_ONLY_FEATURES, NOTE_SENTENCES, PROFILE_COLUMNS
from monitoring.policy import isoformat
from monitoring.profile_store import write_view
from monitoring.profiles import profile_rows
from monitoring.service import assess, drift_report_html, parse_window, read_window, time_window

CALIBRATION = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "drift_calibration.json"

THRESHOLDS = DriftThresholds(warning=0.3, critical=0.6, min_notes=50)
HOUR = datetime(2026, 1, 31, 14, tzinfo=UTC)


def feature_rows(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Note features of ``n`` synthetic notes; ``shift`` > 0 moves sizes, OOV and entity rates, confidences
    the way out-of-domain text does (more OOV words, fewer entities, lower confidence)."""
    rng = np.random.default_rng(seed)
    words = rng.gamma(4, 5, n) + 3
    return pd.DataFrame({
        "chars": words * (5.5 + 2 * shift), "wordpieces": words * (1.3 + 1.5 * shift), "windows": np.ones(n),
        "unknown_wordpiece_rate": rng.beta(1, 200, n), "oov_word_rate": rng.beta(1 + 6 * shift, 20, n),
        "disease_per_100_words": rng.poisson(8 * (1 - 0.8 * shift), n),
        "treatment_per_100_words": rng.poisson(5 * (1 - 0.8 * shift), n),
        "confidence_mean": 1 - rng.beta(1, 30, n) * (1 + 3 * shift),
        "confidence_min": 1 - rng.beta(2, 5, n) * (1 + shift), "low_confidence_rate": rng.beta(1, 15 - 10 * shift, n),
        "entity_oov_rate": rng.beta(1 + 4 * shift, 12, n), "misspelling_rate": rng.beta(1 + 2 * shift, 40, n),
        "treatment_oov_rate": rng.beta(1 + 4 * shift, 8, n),
    })


def write_profile(root: Path, model: str, window_start: datetime, rows: pd.DataFrame, writer: str) -> Path:
    """A profile in the store layout ``<root>/<model>/<window_start>_<writer>.bin``."""
    folder = root / model
    folder.mkdir(parents=True, exist_ok=True)
    return write_view(why.log(rows).view(), folder / f"{window_start:%Y%m%dT%H%M%SZ}_{writer}.bin")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "reference_profile.bin"
    write_view(why.log(feature_rows(3000, seed=1)).view(), path)
    return path


@pytest.mark.parametrize(("shift", "level"), [(0.0, "none"), (0.3, "warning"), (0.8, "critical")])
def test_levels(tmp_path: Path, reference: Path, shift: float, level: str) -> None:
    # two writers (two Triton instances) in the window are merged: the counts say so
    write_profile(tmp_path, "ner", HOUR, feature_rows(200, seed=2, shift=shift), "101-0")
    write_profile(tmp_path, "ner", HOUR + timedelta(minutes=10), feature_rows(200, seed=3, shift=shift), "102-0")
    report = check(tmp_path, "ner", reference, HOUR, HOUR + timedelta(hours=1), THRESHOLDS)
    assert report.level == level, report.reason
    assert report.counts == {"notes": 400, "profiles": 2, "reference_notes": 3000}
    # every feature is scored by distance but the mean-only ones, which have their mean shift alone
    assert set(report.scores) == set(feature_rows(1, 0).columns) - set(MEAN_ONLY_FEATURES) == set(DISTANCE_FEATURES)
    assert set(MEAN_ONLY_FEATURES) <= set(report.mean_shifts)
    assert all(0.0 <= s <= 1.0 for s in report.scores.values())
    if shift:  # the strongest feature is the one moved most
        assert max(report.scores, key=report.scores.get) == "oov_word_rate"
    assert json.loads(json.dumps(report.to_dict()))["level"] == level


def test_features_missing_from_the_window_are_named_not_scored(reference: Path) -> None:
    # a distance feature (a version without a vocabulary has no out-of-vocabulary rates) and a mean-only one
    from monitoring.profile_store import read_profile

    rows = feature_rows(200, seed=2).drop(columns=["oov_word_rate", "treatment_oov_rate"])
    report = compare(why.log(rows).view(), read_profile(reference), HOUR, HOUR, THRESHOLDS)
    assert report.reason.endswith("; not scored (no values on one side): oov_word_rate, treatment_oov_rate")
    assert "treatment_oov_rate" not in report.mean_shifts and "oov_word_rate" not in report.scores


def test_window_bounds_and_too_few_notes(tmp_path: Path, reference: Path) -> None:
    # before, after and at the end of the window: not read; a shifted but tiny window stays "none"
    for moment in (HOUR - timedelta(seconds=1), HOUR + timedelta(hours=1)):
        write_profile(tmp_path, "ner", moment, feature_rows(500, seed=4, shift=0.8), "1-0")
    write_profile(tmp_path, "ner_int8", HOUR, feature_rows(500, seed=4, shift=0.8), "1-0")
    write_profile(tmp_path, "ner", HOUR, feature_rows(30, seed=5, shift=0.8), "1-0")
    report = check(tmp_path, "ner", reference, HOUR, HOUR + timedelta(hours=1), THRESHOLDS)
    assert (report.level, report.scores, report.counts["notes"], report.counts["profiles"]) == ("none", {}, 30, 1)
    assert "too few notes" in report.reason
    empty = check(tmp_path, "ner", reference, HOUR + timedelta(hours=2), HOUR + timedelta(hours=3), THRESHOLDS)
    assert (empty.level, empty.counts["notes"], empty.counts["profiles"]) == ("none", 0, 0)


def test_thresholds_validated_and_reference_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="warning <= critical"):
        DriftThresholds(warning=0.7, critical=0.5)
    for field in ("estimate_error", "critical_min_support"):
        with pytest.raises(ValueError, match="critical_min_support not negative"):
            DriftThresholds(**{field: -1})
    assert DriftThresholds(max_drop=0.01, estimate_error=0.02).critical_drop() == 0.0  # never below no drop at all
    with pytest.raises(FileNotFoundError, match="no reference profile"):
        check(tmp_path, "ner", tmp_path / "missing.bin", HOUR, HOUR + timedelta(hours=1))


def test_command_line_thresholds_override_only_what_is_given() -> None:
    assert DriftThresholds.overridden(warning=None, critical=None, min_notes=None) == DriftThresholds()
    assert DriftThresholds.overridden(warning=0.5, min_notes=None) == DriftThresholds(warning=0.5)
    with pytest.raises(ValueError, match="warning <= critical"):
        DriftThresholds.overridden(warning=0.9, critical=0.5)


def check(root: Path, model: str, reference: Path, start: datetime, end: datetime,
          thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> DriftReport:
    """The drift report of a store's window: the way MonitorFlow and `medner monitor check` read and assess one."""
    window = read_window(str(root), model, reference=str(reference), start=isoformat(start), end=isoformat(end))
    return assess(window, thresholds)


def test_time_window() -> None:
    assert parse_window("90s") == 90 and parse_window("1h") == 3600 and parse_window("2d") == 172800
    for bad in ("", "h", "1x", "-1h"):
        with pytest.raises(ValueError, match="bad window"):
            parse_window(bad)
    assert time_window("1h", now=HOUR) == (HOUR - timedelta(hours=1), HOUR)
    assert time_window(start="2026-01-31T13:00:00Z", end="2026-01-31T14:00:00") == (HOUR - timedelta(hours=1), HOUR)
    with pytest.raises(ValueError, match="empty window"):
        time_window(start="2026-01-31T14:00:00Z", end="2026-01-31T13:00:00Z")


def test_html_report(reference: Path) -> None:
    page = drift_report_html(why.log(feature_rows(300, seed=6, shift=0.3)).view(), why.read(str(reference)).view())
    assert page.startswith("<!DOCTYPE html>") and "<iframe srcdoc=" in page
    assert "oov_word_rate" in page and "hellinger" in page


def test_cli_check(tmp_path: Path, reference: Path) -> None:
    repository = tmp_path / "repo"
    for version in (1, 2, 10):  # the newest version (numerically) has the reference
        (repository / "ner" / str(version)).mkdir(parents=True)
    (repository / "ner" / "10" / "reference_profile.bin").write_bytes(reference.read_bytes())
    store = tmp_path / "profiles"
    write_profile(store, "ner", HOUR, feature_rows(300, seed=7, shift=0.8), "1-0")
    args = ["monitor", "check", "--profile-dir", str(store), "--repository", str(repository),
            "--start", "2026-01-31T14:00:00Z", "--end", "2026-01-31T15:00:00Z", "--min-notes", "50"]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--critical", "0.6", "--html", str(tmp_path / "drift.html")])
    assert result.exit_code == 4, result.output  # critical: schedulers see the level in the exit status
    report = json.loads(result.stdout)
    assert set(report) >= set(DriftReport.__dataclass_fields__)
    assert report["level"] == "critical" and report["counts"]["notes"] == 300
    assert report["window_start"] == "2026-01-31T14:00:00Z" and report["window_end"] == "2026-01-31T15:00:00Z"
    assert "<iframe" in (tmp_path / "drift.html").read_text()
    calm = runner.invoke(app, [*args, "--critical", "0.95", "--warning", "0.9"])
    raised = json.loads(calm.stdout)
    assert calm.exit_code == 0 and raised["level"] == "none" and raised["thresholds"]["critical"] == 0.95

    nothing = runner.invoke(app, [*args[:6], "--window", "1h"])  # ends now: no profiles
    assert nothing.exit_code == 1 and "no ner profiles" in nothing.output
    no_reference = runner.invoke(app, [*args, "--model", "ner_int8"])
    assert no_reference.exit_code == 1 and "no reference profile" in no_reference.output
    from_env = runner.invoke(app, [*args[:2], *args[4:], "--critical", "0.6"], env={"MEDNER_PROFILE_DIR": str(store)})
    assert from_env.exit_code == 4 and json.loads(from_env.stdout) == report  # the store named by the environment


def test_cli_check_on_a_bucket(tmp_path: Path, reference: Path, moto_endpoint: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The production layout: profiles and the model repository in a bucket (a moto server); the champion's
    reference profile is read from there."""
    from medner.registry import write_serving_record
    from medner.s3 import opened
    from tests.aws import TEST_CREDENTIALS, aws

    for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint,
                        "MEDNER_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    aws(moto_endpoint, "s3").create_bucket(Bucket="ops")
    with opened("s3://ops/repository") as repository:
        for version in (1, 2):
            (repository / "ner" / str(version)).mkdir(parents=True)
            (repository / "ner" / str(version) / "reference_profile.bin").write_bytes(
                reference.read_bytes() if version == 1 else b"not a profile")  # v2 would fail: it is not read
        write_serving_record(repository, {"version": 1, "previous": [], "history": []})  # v1 serves
    store = tmp_path / "profiles"
    profile = write_profile(store, "ner", HOUR, feature_rows(300, seed=7, shift=0.8), "1-0")
    aws(moto_endpoint, "s3").upload_file(str(profile), "ops", f"profiles/ner/{profile.name}")
    args = ["monitor", "check", "--profile-dir", "s3://ops/profiles", "--repository", "s3://ops/repository",
            "--start", "2026-01-31T14:00:00Z", "--end", "2026-01-31T15:00:00Z", "--min-notes", "50"]
    result = CliRunner().invoke(app, [*args, "--critical", "0.6"])
    assert result.exit_code == 4, result.output
    assert json.loads(result.stdout)["counts"]["notes"] == 300
    missing = CliRunner().invoke(app, [*args, "--model", "ner_int8"])  # the champion has no ner_int8 files here
    assert missing.exit_code == 1, missing.output
    assert missing.stderr == "error: no profile at s3://ops/repository/ner_int8/1/reference_profile.bin\n"


def sentence_rows(frame: pd.DataFrame, sentences_per_note: int) -> np.ndarray:
    """Feature rows as the served models log them: one per sentence, consecutive rows grouped into notes of
    ``sentences_per_note`` (the last note takes what is left), the note column on each note's first row."""
    rows = np.full((len(frame), len(FEATURES) + 1), np.nan)
    rows[:, : len(FEATURES)] = frame[list(FEATURES)].to_numpy()
    firsts = np.arange(0, len(frame), sentences_per_note)
    rows[firsts, -1] = np.minimum(sentences_per_note, len(frame) - firsts)
    return rows


def test_packaging_changes_counts_never_scores(reference: Path) -> None:
    from monitoring.profile_store import read_profile

    sentences = feature_rows(600, seed=8, shift=0.3)
    reference_view = read_profile(reference)  # rows without the note column: one note of one sentence each
    scored = DriftThresholds(warning=0.3, critical=0.6, min_notes=30)
    reports = {k: compare(profile_rows(sentence_rows(sentences, k), HOUR), reference_view, HOUR, HOUR, scored)
               for k in (1, 7, 20)}
    assert {k: r.counts["notes"] for k, r in reports.items()} == {1: 600, 7: 86, 20: 30}
    assert all(r.counts["sentences"] == 600 and r.counts["reference_sentences"] == 3000 for r in reports.values())
    assert reports[1].scores == reports[7].scores == reports[20].scores  # the note column is never scored
    assert NOTE_SENTENCES not in reports[1].scores and {r.level for r in reports.values()} == {"warning"}
    assert "exported before per-sentence profiles" in reports[7].reason  # a per-note reference is flagged
    # min_notes counts notes, not rows: 30 notes are too few for 31, however many sentences they hold
    few = compare(profile_rows(sentence_rows(sentences, 20), HOUR), reference_view, HOUR, HOUR,
                  DriftThresholds(warning=0.3, critical=0.6, min_notes=31))
    assert (few.level, few.scores, few.counts["notes"]) == ("none", {}, 30) and "too few notes: 30" in few.reason


def test_sentence_and_note_counts_of_profiles() -> None:
    rows = sentence_rows(feature_rows(10, seed=9), 4)  # notes of 4, 4 and 2 sentences
    view = profile_rows(rows, HOUR)
    assert (note_count(view), sentence_count(view)) == (3, 10)
    assert note_count(view.merge(view)) == 6
    legacy = profile_rows(feature_rows(10, seed=9).to_numpy(), HOUR)  # no note column: a row is a note
    assert (note_count(legacy), sentence_count(legacy), note_count(None)) == (10, 10, 0)
    both = compare(legacy, view, HOUR, HOUR, DriftThresholds(min_notes=1))
    assert both.counts == {"notes": 10, "profiles": 1, "reference_notes": 3, "sentences": 10,
                           "reference_sentences": 10}
    assert "exported before" not in both.reason  # only a per-note reference against sentence rows is flagged


def test_defaults_are_the_published_calibration() -> None:
    """The noise curve is what benchmarks/drift_validation.py calibrate suggested from in-distribution windows of
    every size: change one without rerunning the other and this fails."""
    result = json.loads(CALIBRATION.read_text())
    assert result["defaults_match"] and (DEFAULT_THRESHOLDS.noise_floor, DEFAULT_THRESHOLDS.noise_scale) == (
        result["fit"]["noise_floor"], result["fit"]["noise_scale"])
    assert DEFAULT_THRESHOLDS.feature_noise == {name: tuple(curve)
                                                for name, curve in result["fit"]["feature_noise"].items()}
    assert DEFAULT_THRESHOLDS.mean_noise == {name: tuple(curve) for name, curve in result["fit"]["mean_noise"].items()}
    # the support a critical verdict needs, from the accuracy estimate's spread on the same windows
    assert DEFAULT_THRESHOLDS.critical_min_support == result["fit"]["estimate_spread"]["critical_min_support"]
    sizes = result["fit"]["sizes"]
    for curve in result["fit"]["means"].values():  # every in-distribution mean shift below its bound, every size
        assert all(high < curve["floor"] + curve["scale"] * size["s"]
                   for high, size in zip(curve["max"], sizes.values(), strict=True))
    assert len(sizes) >= 4 and all(size["windows"] >= 20 for size in sizes.values())
    assert min(s["rows_mean"] for s in sizes.values()) < 150 and max(s["rows_mean"] for s in sizes.values()) > 3000
    for size in sizes.values():  # every in-distribution window of every size below its bound
        assert size["combined_max"] < size["bound"]


def test_the_bound_follows_the_window_size(reference: Path) -> None:
    """A mild shift scores higher in a small window (noise) than in a large one, yet only the large one is beyond
    its own noise: one fixed threshold would either alarm on small windows or miss large ones."""
    from monitoring.profile_store import read_profile

    thresholds = DriftThresholds(noise_floor=0.07, noise_scale=2.3, min_notes=50, feature_noise={}, mean_noise={})
    view = read_profile(reference)
    small = compare(why.log(feature_rows(100, seed=115, shift=0.1)).view(), view, HOUR, HOUR, thresholds)
    large = compare(why.log(feature_rows(3000, seed=3015, shift=0.1)).view(), view, HOUR, HOUR, thresholds)
    calm = compare(why.log(feature_rows(3000, seed=3000)).view(), view, HOUR, HOUR, thresholds)
    assert small.combined > large.combined > calm.combined
    assert (small.level, large.level, calm.level) == ("none", "warning", "none")
    assert small.warning_bound > small.combined and large.warning_bound < large.combined
    assert large.warning_bound == pytest.approx(0.07 + 2.3 * (1 / 3000 + 1 / 3000) ** 0.5, abs=1e-6)
    assert DriftThresholds(warning=0.5).warning_bound(100, 3000) == 0.5  # a fixed bound when one is given


def test_one_feature_beyond_its_own_noise_warns(reference: Path) -> None:
    """Typing errors move one feature: the mean of the top two stays within the combined noise, that feature
    does not stay within its own."""
    from monitoring.profile_store import read_profile

    view = read_profile(reference)
    own = DriftThresholds(noise_floor=0.07, noise_scale=2.3, min_notes=50, feature_noise={"oov_word_rate": (0.05, 2.0)},
                          mean_noise={})

    def window(a: float) -> DriftReport:
        rows = feature_rows(300, seed=7)
        rows["oov_word_rate"] = np.random.default_rng(8).beta(a, 20, 300)  # in the reference: beta(1, 20)
        return compare(why.log(rows).view(), view, HOUR, HOUR, own)

    calm, moved = window(1.0), window(1.6)
    bound = round(0.05 + 2.0 * (1 / 300 + 1 / 3000) ** 0.5, 6)
    assert (calm.level, calm.beyond) == ("none", {})
    assert moved.combined < moved.warning_bound and moved.scores["oov_word_rate"] >= bound
    assert (moved.level, moved.beyond) == ("warning", {"oov_word_rate": bound})
    assert f"beyond their own bound: oov_word_rate {moved.scores['oov_word_rate']:.3f} >= {bound:.3f}" in moved.reason
    assert compare(why.log(feature_rows(300, seed=7)).view(), view, HOUR, HOUR, own).level == "none"
    assert DriftThresholds(warning=0.5).feature_bounds(300, 3000) == {}  # a fixed bound replaces both rules


def test_a_rare_event_s_mean_beyond_its_own_noise_warns() -> None:
    """Misspelt words are rare: most sentences have none, in the window as in the reference. Three times as many
    move the rate's mean far beyond its noise while the distance between the binned distributions (nearly all of
    both in the first bin) stays within its own."""
    from monitoring.drift import mean_shifts

    def rows(n: int, seed: int, share: float) -> pd.DataFrame:  # ``share`` of the sentences with misspelt words
        frame = feature_rows(n, seed)
        rng = np.random.default_rng(seed + 1)
        frame["misspelling_rate"] = np.where(rng.random(n) < share, rng.uniform(0.05, 0.2, n), 0.0)
        return frame

    base = rows(3000, 1, 0.05)
    reference = why.log(base).view()
    # the distance's bound is ~0.24 at this size and the mean shift's ~0.17; the distance, read from randomised
    # (KLL) sketches, varies a little from run to run around ~0.18, the mean shift is exact
    thresholds = DriftThresholds(noise_floor=0.07, noise_scale=2.3, min_notes=50,
                                 feature_noise={"misspelling_rate": (0.12, 2.0)},
                                 mean_noise={"misspelling_rate": (0.05, 2.0)})
    calm_rows, moved_rows = rows(300, 7, 0.05), rows(300, 8, 0.15)
    calm, moved = (compare(why.log(r).view(), reference, HOUR, HOUR, thresholds) for r in (calm_rows, moved_rows))
    bound = round(0.05 + 2.0 * (1 / 300 + 1 / 3000) ** 0.5, 6)
    assert (calm.level, calm.beyond, calm.means_beyond) == ("none", {}, {})
    assert moved.beyond == {} and moved.combined < moved.warning_bound  # the distances alone: no warning
    assert (moved.level, moved.means_beyond) == ("warning", {"misspelling_rate": bound})
    rate, base_rate = moved_rows["misspelling_rate"], base["misspelling_rate"]
    expected = (rate.mean() - base_rate.mean()) / base_rate.std()  # pandas' std: the sample's, as whylogs'
    assert moved.mean_shifts["misspelling_rate"] == pytest.approx(expected, rel=1e-4) and expected > 0.3
    assert f"means beyond their own bound: misspelling_rate {expected:+.3f} sd" in moved.reason
    # a column constant on the reference (``windows``) has no spread to measure a shift in
    assert "windows" not in mean_shifts(why.log(moved_rows).view(), reference)
    assert DriftThresholds(warning=0.5).feature_bounds(300, 3000, means=True) == {}  # a fixed bound replaces it


def estimated_rows(frame: pd.DataFrame, correct_share: float) -> np.ndarray:
    """Sentence rows with the estimate columns: 2 entities a sentence, ``correct_share`` of them expected correct,
    2.2 gold entities expected (an estimated F1 of 2 x 2 x share / 4.2)."""
    rows = np.full((len(frame), len(PROFILE_COLUMNS)), np.nan)
    rows[:, : len(FEATURES)] = frame[list(FEATURES)].to_numpy()
    rows[:, PROFILE_COLUMNS.index(NOTE_SENTENCES)] = 1
    rows[:, PROFILE_COLUMNS.index("entities"):] = [2.0, 2.0 * correct_share, 2.2]
    return rows


@pytest.mark.parametrize(("shift", "share", "estimate_error", "min_support", "level"), [
    (0.0, 0.5, 0.02, 1000, "none"),  # the estimate fell, the distribution did not move: no verdict on noise
    (0.3, 0.72, 0.02, 1000, "warning"),  # moved, the model as good as on the reference: retrain
    (0.3, 0.6, 0.02, 1000, "critical"),  # moved, and 0.14 F1 below the reference's estimate: re-experiment
    (0.3, 0.708, 0.02, 1000, "critical"),  # moved, 0.040 below: past max_drop (0.05) less the estimate's error
    (0.3, 0.708, 0.0, 1000, "warning"),  # the same window with an estimate taken as exact
    (0.3, 0.6, 0.02, 1051, "warning"),  # 0.14 below, but on less support (1,050) than a verdict needs
])
def test_critical_means_the_model_got_worse(shift: float, share: float, estimate_error: float, min_support: int,
                                            level: str) -> None:
    reference = profile_rows(estimated_rows(feature_rows(3000, seed=1), 0.75), HOUR)
    window = profile_rows(estimated_rows(feature_rows(500, seed=20, shift=shift), share), HOUR)
    thresholds = DriftThresholds(noise_floor=0.07, noise_scale=2.3, min_notes=50, feature_noise={}, mean_noise={},
                                 max_drop=0.05, estimate_error=estimate_error, critical_min_support=min_support)
    report = compare(window, reference, HOUR, HOUR, thresholds)
    assert report.level == level, report.reason
    assert report.thresholds["critical_drop"] == round(0.05 - estimate_error, 6)
    assert f"critical above {0.05 - estimate_error:.3f} on a support of {min_support}+" in report.reason
    expected = round(2 * 2 * share / 4.2, 4)
    assert report.estimate == {"entity_f1": expected, "precision": share, "recall": round(2 * share / 2.2, 4),
                               "entities": 1000, "support": 1050, "reference_f1": round(2 * 2 * 0.75 / 4.2, 4),
                               "drop": round(round(2 * 2 * 0.75 / 4.2, 4) - expected, 4)}
    assert f"estimated entity F1 {expected:.3f}" in report.reason
    assert ("too little support for a critical verdict: 1050 < 1051" in report.reason) == (min_support == 1051)
