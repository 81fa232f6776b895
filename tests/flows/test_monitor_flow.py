"""MonitorFlow end to end: profiles in a store -> drift level, card, and the policy's decision."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from monitoring.profile_store import window_name, write_view
from monitoring.profiles import profile_rows
from tests.flows.conftest import card_data
from tests.monitoring.test_drift import feature_rows

pytestmark = pytest.mark.slow

THRESHOLDS = ["--warning", "0.3", "--critical", "0.6", "--min-notes", "50"]


def profile_store(tmp_path: Path, shift: float) -> tuple[Path, Path]:
    """A repository whose newest ner version has a reference profile, and a store with two writers'
    profiles of the current hour (``shift``: how far their features moved)."""
    repository = tmp_path / "repository"
    (repository / "ner" / "1").mkdir(parents=True)
    now = datetime.now(UTC)
    write_view(profile_rows(feature_rows(3000, seed=1).to_numpy(), now), repository / "ner" / "1" /
               "reference_profile.bin")
    store = tmp_path / "profiles"
    for k, writer in enumerate(("11-a", "12-b")):
        start = (now - timedelta(minutes=20 - 5 * k)).replace(second=0, microsecond=0)
        rows = feature_rows(200, seed=2 + k, shift=shift).to_numpy()
        write_view(profile_rows(rows, start), store / "ner" / f"{window_name(start.timestamp())}_{writer}.bin")
    return repository, store


def test_shifted_window_is_critical_with_card_and_dry_run(flow_runner, tmp_path: Path) -> None:
    repository, store = profile_store(tmp_path, shift=0.8)
    flow_runner.run("monitor_flow.py", "--profile-dir", str(store), "--repository", str(repository), *THRESHOLDS,
                    "--dry-run", "True")
    result = flow_runner.client(
        "run = Flow('MonitorFlow').latest_successful_run\n"
        "from metaflow.cards import get_cards\n"
        "result = dict(report=run.data.report, decision=run.data.decision, html=run.data.drift_html,"
        " card=get_cards(run['check'].task)[0].get())"
    )
    report, decision = result["report"], result["decision"]
    assert report["level"] == "critical" and report["counts"] == {"notes": 400, "profiles": 2,
                                                                  "reference_notes": 3000}
    assert max(report["scores"], key=report["scores"].get) == "oov_word_rate"
    assert (decision["action"], decision["flow"], decision["status"]) == ("reexperiment", "ExperimentFlow", "dry-run")
    assert "<iframe" in result["html"] and "oov_word_rate" in result["html"]
    card = json.dumps(card_data(result["card"]))
    assert "CRITICAL" in card and "Hellinger distance" in card and "oov_word_rate" in card
    assert "mean shift (reference sd)" in card
    assert '["treatment_oov_rate", "-", "+' in card  # a feature scored by its mean alone: no distance
    assert card.count('"type": "image"') == 1 and "iframe srcdoc=" in card  # bar chart + whylogs report
    assert not (Path(flow_runner.root) / "monitoring").exists()  # a dry run records nothing


def test_in_distribution_window_records_no_action(flow_runner, tmp_path: Path) -> None:
    repository, store = profile_store(tmp_path, shift=0.0)
    log = tmp_path / "decisions.jsonl"
    flow_runner.run("monitor_flow.py", "--profile-dir", str(store), "--repository", str(repository), *THRESHOLDS,
                    "--decision-log", str(log), "--trigger-backend", "local")
    decision = flow_runner.client("result = Flow('MonitorFlow').latest_successful_run.data.decision")
    assert (decision["level"], decision["action"], decision["status"]) == ("none", "none", "none")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["level"], r["action"], r["target"]) for r in records] == [("none", "none", "")]


def test_a_quality_drop_from_reviews_calls_for_reexperiment(flow_runner, tmp_path: Path) -> None:
    from tests.monitoring.test_quality import reviewed_store

    repository, store = profile_store(tmp_path, shift=0.0)  # no drift: the reviews alone call for action
    (repository / "ner_encoder" / "1").mkdir(parents=True)
    (repository / "ner_encoder" / "1" / "lineage.json").write_text(json.dumps({"metrics_fp32": {"entity_f1": 0.9}}))
    url = f"sqlite:///{tmp_path / 'review.db'}"
    reviewed_store(url, version=1, notes=10, agree=6)
    flow_runner.run("monitor_flow.py", "--profile-dir", str(store), "--repository", str(repository), *THRESHOLDS,
                    "--review-db", url, "--min-reviewed-notes", "10", "--dry-run", "True")
    result = flow_runner.client(
        "run = Flow('MonitorFlow').latest_successful_run\n"
        "result = dict(drift=run.data.decision, quality=run.data.quality, decision=run.data.quality_decision)")
    assert result["drift"]["action"] == "none"
    assert (result["quality"]["level"], result["quality"]["entity_f1"], result["quality"]["sentences"]) == (
        "critical", 0.6, 10)
    assert (result["decision"]["action"], result["decision"]["flow"]) == ("reexperiment", "ExperimentFlow")
    # made for this run's window, which names the flow it starts (a retried act starts it once)
    assert result["decision"]["window_end"] == result["drift"]["window_end"] is not None


def test_by_group_judges_each_group_in_the_card_and_records_the_verdicts(flow_runner, tmp_path: Path) -> None:
    from monitoring.profile_store import group_folder
    from monitoring.profiles import segment_views

    repository, store = profile_store(tmp_path, shift=0.0)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    rows = np.concatenate([feature_rows(150, seed=20 + k, shift=0.8 if k == 2 else 0.0).to_numpy() for k in range(3)])
    groups = [group for group in ("clinic_a", "clinic_b", "clinic_c") for _ in range(150)]
    for group, view in segment_views(rows, groups, "ner").items():
        write_view(view, store / group_folder("ner", group) / f"{window_name(start.timestamp())}_11-a.bin")
    log = tmp_path / "decisions.jsonl"
    flow_runner.run("monitor_flow.py", "--profile-dir", str(store), "--repository", str(repository), *THRESHOLDS,
                    "--by-group", "True", "--decision-log", str(log))
    result = flow_runner.client(
        "run = Flow('MonitorFlow').latest_successful_run\n"
        "from metaflow.cards import get_cards\n"
        "result = dict(groups=run.data.groups, card=get_cards(run['check'].task)[0].get())")
    verdicts = {g["group"]: g["verdict"] for g in result["groups"]["report"]["groups"]}
    assert verdicts == {"clinic_a": "in line", "clinic_b": "in line", "clinic_c": "diverging"}
    card = json.dumps(card_data(result["card"]))
    assert "Groups of notes against each other" in card and card.count('"type": "image"') == 2  # + small multiples
    kinds = [json.loads(line).get("kind") for line in log.read_text().splitlines()]
    assert kinds.count("groups") == 1  # beside the drift decision: the gauges read it
