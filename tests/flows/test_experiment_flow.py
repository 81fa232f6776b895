import json
import subprocess
import sys

import pytest

from tests.aws import TEST_CREDENTIALS, aws
from tests.flows.conftest import card_data

pytestmark = pytest.mark.slow

GRID = json.dumps([{"name": "crf-baseline", "kind": "crf", "max_iterations": 30},
                   {"name": "tiny-viterbi", "kind": "transformer"},
                   {"name": "tiny-argmax", "kind": "transformer", "decode": "argmax"}])
TINY = json.dumps({"epochs": 1, "batch_size": 8, "threads": 1, "max_steps": 3})


def test_experiment_flow_compares_candidates_and_tags_a_challenger(flow_runner, tmp_path, moto_endpoint) -> None:
    flow_runner.run("experiment_flow.py", "--grid", GRID, "--overrides", TINY, "--seeds", "1,2", "--max-workers", "1")
    result = flow_runner.client(
        "run = Flow('ExperimentFlow').latest_successful_run\n"
        "from metaflow.cards import get_cards\n"
        "result = dict(rows=run.data.results, challenger=run.data.challenger, tags=sorted(run.tags),"
        " pathspec=run.pathspec,"
        " files=sorted(run.data.challenger_model_files), card=get_cards(run['compare'].task)[0].get())"
    )
    runs = {}
    for row in result["rows"]:  # each transformer once per seed, the CRF once
        runs.setdefault(row["name"], []).append(row)
    assert {name: sorted(r["params"].get("seed", 0) for r in rows) for name, rows in runs.items()} == {
        "crf-baseline": [0], "tiny-viterbi": [1, 2], "tiny-argmax": [1, 2]}
    assert result["challenger"] in {"tiny-viterbi", "tiny-argmax"}  # servable, best mean dev F1 over its seeds
    mean_dev = {n: sum(r["dev"]["entity_f1"] for r in runs[n]) / 2 for n in ("tiny-viterbi", "tiny-argmax")}
    assert mean_dev[result["challenger"]] == max(mean_dev.values())
    assert {"challenger", f"challenger:{result['challenger']}"} <= set(result["tags"])
    assert {"config.json", "span_edges.json"} <= set(result["files"])
    card = json.dumps(card_data(result["card"]))
    assert f"Challenger: {result['challenger']}" in card and "latency ms/sentence" in card
    assert "3 candidates (5 runs)" in card and "boundary and type" in card
    assert card.count('"type": "image"') == 1  # the F1 chart

    # `medner export --run ExperimentFlow/ID` publishes that run's challenger, with its lineage, here to a model
    # repository on S3 (a moto server): what production Triton servers read
    s3 = aws(moto_endpoint, "s3")
    s3.create_bucket(Bucket="models")
    env = {**flow_runner.env, **TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint,
           "MEDNER_CACHE_DIR": str(tmp_path / "cache")}
    exported = subprocess.run([sys.executable, "-m", "medner.cli", "export", "--run", result["pathspec"],
                               "--repository", "s3://models/ner"], cwd=flow_runner.root, env=env,
                              capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout)["version"] == 1
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket="models", Prefix="ner/")["Contents"]}
    assert {"ner/ner/config.pbtxt", "ner/ner/1/model.onnx", "ner/ner_int8/1/model.onnx"} <= listed
    lineage = json.loads(s3.get_object(Bucket="models", Key="ner/ner_encoder/1/lineage.json")["Body"].read())
    assert lineage["source"] == result["pathspec"] and lineage["candidate"] == result["challenger"]
    chosen = max(runs[result["challenger"]], key=lambda r: r["dev"]["entity_f1"])  # its seed best on dev
    assert lineage["train_metrics"] == chosen["test"] and lineage["config"] == chosen["params"]
    assert lineage["decode"] == ("argmax" if result["challenger"] == "tiny-argmax" else "viterbi")
