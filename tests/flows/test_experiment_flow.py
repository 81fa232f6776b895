import json
import logging
import shutil

import pytest

from tests.aws import TEST_CREDENTIALS, aws
from tests.flows.conftest import card_data

pytestmark = pytest.mark.slow

GRID = json.dumps([{"name": "crf-baseline", "kind": "crf", "max_iterations": 30},
                   {"name": "tiny-argmax", "kind": "transformer", "decode": "argmax"}])
REPOSITORY = "s3://models/ner"


def test_critical_drift_runs_experiment_flow_which_exports_and_promotes_its_challenger(
        flow_runner, tmp_path, moto_endpoint, exported_repository, narrow_base_model, monkeypatch, caplog) -> None:
    """The loop closes by itself on critical drift: the alert, ExperimentFlow (every candidate, each transformer
    once per seed; the challenger by mean dev F1), its publish step exporting the challenger to the model
    repository on S3 (a moto server) and promoting it through every gate on the server reading that bucket."""
    from medner.registry import loaded_versions, serving_folder
    from medner.s3 import opened
    from medner.triton import TritonServer
    from medner.triton_control import ADMIN_KEY_ENV
    from monitoring.triggers import LocalBackend, act, closing_the_loop
    from tests.serve import beatable_champion

    for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint,
                        "MEDNER_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    s3 = aws(moto_endpoint, "s3")
    s3.create_bucket(Bucket="models")
    with opened(REPOSITORY) as repository:  # the champion: the session's export, beaten by any trained model
        shutil.copytree(beatable_champion(exported_repository, tmp_path / "champion"), repository, dirs_exist_ok=True)
    folder, champion, source = serving_folder(REPOSITORY)
    key = "experiment-flow-test-key"
    env = {**flow_runner.env, **TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint, ADMIN_KEY_ENV: key,
           "MEDNER_CACHE_DIR": str(tmp_path / "flow-cache")}  # the flow's own mirror: another machine's
    tiny = json.dumps({"epochs": 1, "batch_size": 8, "threads": 1, "max_steps": 3,
                       "base_model": str(narrow_base_model)})
    parameters = {"ExperimentFlow": {"grid": GRID, "overrides": tiny, "seeds": "1,2", "max-workers": 2,
                                     "uat-min-f1": 0.0,  # untrained models: no real acceptance threshold
                                     "ensemble": True}}  # the challenger's two seeds, served as one model
    window = {"level": "critical", "window_start": "20261201T110000Z", "window_end": "20261201T120000Z"}
    with TritonServer.on_free_ports(folder, admin_key=key, version=champion, source=source) as server, \
            caplog.at_level(logging.WARNING, logger="medner.monitoring"):
        before = loaded_versions(server.grpc_url, key)
        decision = act(window, LocalBackend(env=env, cwd=flow_runner.root), tmp_path / "decisions.jsonl",
                       parameters=closing_the_loop(parameters, REPOSITORY, server.grpc_url))
        after = loaded_versions(server.grpc_url, key)
    assert (before, after) == ({"ner": [1], "ner_int8": [1]}, {"ner": [2], "ner_int8": [2]})  # the challenger
    assert decision["status"] == "triggered" and decision["action"] == "reexperiment" and decision["alert"], decision
    assert any("ALERT" in r.getMessage() and decision["target"] in r.getMessage() for r in caplog.records)
    result = flow_runner.client(
        f"run = Run('{decision['target']}')\n"
        "from metaflow.cards import get_cards\n"
        "result = dict(rows=run.data.results, challenger=run.data.challenger, tags=sorted(run.tags),"
        " pathspec=run.pathspec, exported=run.data.exported_version, promotion=run.data.promotion,"
        " files=sorted(run.data.challenger_model_files), card=get_cards(run['compare'].task)[0].get())"
    )
    runs = {}
    for row in result["rows"]:  # each transformer once per seed, the CRF once
        runs.setdefault(row["name"], []).append(row)
    assert {name: sorted(r["params"].get("seed", 0) for r in rows) for name, rows in runs.items()} == {
        "crf-baseline": [0], "tiny-argmax": [1, 2]}
    assert result["challenger"] == "tiny-argmax"  # the servable candidate, whatever the CRF scores (unit-tested:
    # the best mean dev F1 over seeds among servable ones, tests/medner/test_experiments.py)
    assert {"challenger", f"challenger:{result['challenger']}", "project_branch:prod"} <= set(result["tags"])
    # its two seeds as one seed ensemble: the members' weights, the tokenizer and span edges at the top
    assert {"ensemble.json", "members/0/config.json", "members/1/config.json", "span_edges.json",
            "tokenizer.json"} <= set(result["files"])
    card = json.dumps(card_data(result["card"]))
    assert f"Challenger: {result['challenger']}" in card and "latency ms/sentence" in card
    assert "within the serving budget: at most 2x the latency" in card  # the default --max-cost-ratio
    assert "2 candidates (3 runs)" in card and "boundary and type" in card
    assert card.count('"type": "image"') == 1  # the F1 chart

    # the publish step exported the challenger to the bucket, with its lineage, and promoted it there
    assert result["exported"] == 2 and result["promotion"]["action"] == "promote"
    assert [g["name"] for g in result["promotion"]["gates"]] == ["export", "quality", "uat", "smoke"]
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket="models", Prefix="ner/")["Contents"]}
    assert {"ner/ner/config.pbtxt", "ner/ner/2/model.onnx", "ner/ner_int8/2/model.onnx"} <= listed
    lineage = json.loads(s3.get_object(Bucket="models", Key="ner/ner_encoder/2/lineage.json")["Body"].read())
    assert lineage["source"] == result["pathspec"] and lineage["candidate"] == result["challenger"]
    chosen = max(runs[result["challenger"]], key=lambda r: r["dev"]["entity_f1"])  # its seed best on dev
    assert lineage["train_metrics"] == chosen["test"] and lineage["config"] == chosen["params"]
    assert lineage["decode"] == "argmax"  # the candidate's own decoder, as it was evaluated
    serving = json.loads(s3.get_object(Bucket="models", Key="ner/serving.json")["Body"].read())
    assert (serving["version"], serving["previous"]) == (2, [1])
