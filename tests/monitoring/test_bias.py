"""Bias monitoring on synthetic profiles: a group whose features depart from the other groups' is flagged and the
others are not, a small group gets no verdict, profiles by group travel through the rolling writer and the store
(folder and S3), and the verdicts reach the CLI, the Prometheus gauges and the CloudWatch metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medner.cli import app
from monitoring.bias import assess_groups, check_groups, groups_record, record_groups
from monitoring.cloudwatch import metric_data
from monitoring.metrics import metrics_text
from monitoring.policy import DecisionLog
from monitoring.profile_store import group_folder, list_groups, list_profiles, write_view
from monitoring.profiles import RollingProfiler, segment_views
from tests.aws import TEST_CREDENTIALS, aws
from tests.monitoring.test_drift import feature_rows

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def grouped_rows(sizes: dict[str, int], shifted: str = "", seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Feature rows (one per one-sentence note) of each group, ``shifted``'s moved out of distribution."""
    parts = [feature_rows(n, seed=seed + i, shift=0.8 if group == shifted else 0.0).to_numpy()
             for i, (group, n) in enumerate(sizes.items())]
    return np.concatenate(parts), [group for group, n in sizes.items() for _ in range(n)]


@pytest.fixture(scope="module")
def reference_view():
    from monitoring.profiles import profile_rows

    return profile_rows(feature_rows(3000, seed=99).to_numpy(), NOW)


def test_the_departing_group_is_flagged_and_the_others_are_not(reference_view) -> None:
    rows, groups = grouped_rows({"clinic_a": 400, "clinic_b": 400, "clinic_c": 400, "clinic_d": 400, "tiny": 30},
                                shifted="clinic_d")
    report = assess_groups(segment_views(rows, groups, "ner"), reference_view, NOW, NOW)
    verdicts = {g.group: g for g in report.groups}
    assert {name: g.verdict for name, g in verdicts.items()} == {
        "clinic_a": "in line", "clinic_b": "in line", "clinic_c": "in line", "clinic_d": "diverging",
        "tiny": "no verdict"}
    assert verdicts["tiny"].reason == "too few notes: 30 < 100" and verdicts["clinic_d"].notes == 400
    d = verdicts["clinic_d"].against_rest
    assert d["combined"] > d["bound"] and report.level in ("warning", "critical")
    assert all(verdicts[g].against_rest["combined"] < verdicts[g].against_rest["bound"]
               for g in ("clinic_a", "clinic_b", "clinic_c"))

    calm = assess_groups(segment_views(*grouped_rows({"clinic_a": 400, "clinic_b": 400}), "ner"), reference_view,
                         NOW, NOW)
    assert calm.level == "none" and {g.verdict for g in calm.groups} == {"in line"}


def test_the_rolling_writer_profiles_each_group_beside_all_notes(tmp_path: Path) -> None:
    rows, groups = grouped_rows({"clinic_a": 5, "clinic_b": 3})
    profiler = RollingProfiler(tmp_path, "ner", 60, writer="w1", background=False, clock=NOW.timestamp)
    profiler.log(rows[:5], groups[:5])
    profiler.log(rows[5:], [None, "clinic_b", "clinic_b"])  # a note without a group counts in all notes only
    profiler.log(rows[:2], None)
    profiler.close()
    assert list_groups(tmp_path, "ner") == ["clinic_a", "clinic_b"]
    everything = list_profiles(tmp_path, "ner", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert len(everything) == 1  # the model's own profile only: the groups' lie in their own folders
    from monitoring.drift import note_count
    from monitoring.profile_store import merge_profiles

    def notes(model: str) -> int:
        return note_count(merge_profiles(list_profiles(tmp_path, model, NOW - timedelta(hours=1),
                                                       NOW + timedelta(hours=1))))

    assert (notes("ner"), notes(group_folder("ner", "clinic_a")), notes(group_folder("ner", "clinic_b"))) == (10, 5, 2)


def test_groups_in_an_s3_store_are_listed_apart_from_the_model_s_profiles(moto_endpoint: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    aws(moto_endpoint, "s3").create_bucket(Bucket="profiles")
    rows, groups = grouped_rows({"clinic_a": 5, "clinic_b": 3})
    with RollingProfiler("s3://profiles/live", "ner", 60, writer="w1", background=False, clock=NOW.timestamp) as p:
        p.log(rows, groups)
    window = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert list_groups("s3://profiles/live", "ner") == ["clinic_a", "clinic_b"]
    assert len(list_profiles("s3://profiles/live", "ner", *window)) == 1  # not the groups' files
    assert len(list_profiles("s3://profiles/live", group_folder("ner", "clinic_b"), *window)) == 1


def test_check_by_group_on_the_command_line_and_in_the_gauges(tmp_path: Path, reference_view) -> None:
    rows, groups = grouped_rows({"clinic_a": 300, "clinic_b": 300, "clinic_c": 300}, shifted="clinic_c")
    start = NOW.replace(minute=0)
    for group, view in segment_views(rows, groups, "ner").items():
        write_view(view, tmp_path / "profiles" / group_folder("ner", group) / f"{start:%Y%m%dT%H%M%SZ}_w1.bin")
    write_view(reference_view, tmp_path / "reference.bin")
    common = ["monitor", "check", "--by-group", "--profile-dir", str(tmp_path / "profiles"), "--reference",
              str(tmp_path / "reference.bin"), "--start", start.isoformat(), "--end", (start + timedelta(hours=1)
                                                                                      ).isoformat()]
    table = CliRunner().invoke(app, common)
    assert table.exit_code in (3, 4), table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["group", "notes", "verdict"]
    assert [line.split()[:3] for line in lines[1:]] == [["clinic_a", "300", "in"], ["clinic_b", "300", "in"],
                                                        ["clinic_c", "300", "diverging"]]
    as_json = json.loads(CliRunner().invoke(app, [*common, "--format", "json"]).output)
    assert [g["verdict"] for g in as_json["groups"]] == ["in line", "in line", "diverging"]

    report = check_groups(str(tmp_path / "profiles"), "ner", reference=str(tmp_path / "reference.bin"),
                          start=start.isoformat(), end=(start + timedelta(hours=1)).isoformat())
    entry = record_groups(groups_record(report), DecisionLog(tmp_path / "decisions.jsonl"))
    assert entry["kind"] == "groups" and entry["reason"] == "groups diverging from the others: clinic_c"
    samples = dict(line.rsplit(" ", 1) for line in metrics_text(DecisionLog(tmp_path / "decisions.jsonl").read()
                                                                ).splitlines() if not line.startswith("#"))
    assert samples['medner_group_level{group="clinic_a"}'] == "0.0"
    assert float(samples['medner_group_level{group="clinic_c"}']) >= 1
    assert samples['medner_group_notes{group="clinic_b"}'] == "300.0"
    assert 'medner_group_drift_combined{against="rest",group="clinic_c"}' in samples
    data = [{k: v for k, v in d.items() if k != "Timestamp"} for d in metric_data(groups_record(report))]
    assert {"MetricName": "GroupLevel", "Dimensions": [{"Name": "Group", "Value": "clinic_a"}], "Value": 0} in data
    assert {d["MetricName"] for d in data} == {"GroupLevel", "GroupDriftCombined"}  # no estimate columns here


def test_no_profiles_by_group_is_a_clear_error(tmp_path: Path, reference_view) -> None:
    write_view(reference_view, tmp_path / "reference.bin")
    (tmp_path / "profiles").mkdir()
    result = CliRunner().invoke(app, ["monitor", "check", "--by-group", "--profile-dir", str(tmp_path / "profiles"),
                                      "--reference", str(tmp_path / "reference.bin")])
    assert result.exit_code == 1 and "no ner profiles by group" in result.output
