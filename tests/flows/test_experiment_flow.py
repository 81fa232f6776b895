import json
import subprocess
import sys

import pytest

from tests.flows.conftest import card_data

pytestmark = pytest.mark.slow

GRID = json.dumps([{"name": "crf-baseline", "kind": "crf", "max_iterations": 30},
                   {"name": "tiny-viterbi", "kind": "transformer"},
                   {"name": "tiny-argmax", "kind": "transformer", "decode": "argmax"}])
TINY = json.dumps({"epochs": 1, "batch_size": 8, "threads": 1, "max_steps": 3})


def test_experiment_flow_compares_candidates_and_tags_a_challenger(flow_runner, tmp_path) -> None:
    flow_runner.run("experiment_flow.py", "--grid", GRID, "--overrides", TINY, "--max-workers", "1")
    result = flow_runner.client(
        "run = Flow('ExperimentFlow').latest_successful_run\n"
        "from metaflow.cards import get_cards\n"
        "result = dict(rows=run.data.results, challenger=run.data.challenger, tags=sorted(run.tags),"
        " pathspec=run.pathspec,"
        " files=sorted(run.data.challenger_model_files), card=get_cards(run['compare'].task)[0].get())"
    )
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == {"crf-baseline", "tiny-viterbi", "tiny-argmax"}
    assert result["challenger"] in {"tiny-viterbi", "tiny-argmax"}  # servable, best on dev
    best_dev = max(rows[n]["dev"]["entity_f1"] for n in ("tiny-viterbi", "tiny-argmax"))
    assert rows[result["challenger"]]["dev"]["entity_f1"] == best_dev
    assert {"challenger", f"challenger:{result['challenger']}"} <= set(result["tags"])
    assert "config.json" in result["files"]
    card = json.dumps(card_data(result["card"]))
    assert f"Challenger: {result['challenger']}" in card and "latency ms/sentence" in card
    assert card.count('"type": "image"') == 1  # the F1 chart

    # `medner export --run ExperimentFlow/ID` publishes that run's challenger, with its lineage
    repository = tmp_path / "repository"
    exported = subprocess.run([sys.executable, "-m", "medner.cli", "export", "--run", result["pathspec"],
                               "--repository", str(repository)], cwd=flow_runner.root, env=flow_runner.env,
                              capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout)["version"] == 1
    lineage = json.loads((repository / "ner_encoder" / "1" / "lineage.json").read_text())
    assert lineage["source"] == result["pathspec"] and lineage["candidate"] == result["challenger"]
    assert lineage["train_metrics"] == rows[result["challenger"]]["test"]
    assert lineage["decode"] == ("argmax" if result["challenger"] == "tiny-argmax" else "viterbi")
