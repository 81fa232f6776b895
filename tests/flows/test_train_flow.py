import json
import subprocess
import sys

import pytest

from tests.flows.conftest import card_data, flow_options

pytestmark = pytest.mark.slow

METRIC_KEYS = {"entity_f1", "entity_f1_D", "entity_f1_T", "entity_f1_relaxed", "token_weighted_f1", "train_seconds"}


def test_production_retrains_on_its_own_data_and_promotes_by_itself(flow_runner, exported_repository, tmp_path,
                                                                     tiny_training) -> None:
    """Every flow is a @project(name="medner") flow: production runs (`--production`, the prod branch) and a
    researcher's runs (user.NAME) are apart, and what reads runs for production sees production only. And the loop
    closes by itself: a warning starts TrainFlow on the prod branch, which trains on production's latest DataFlow
    run (not the researcher's newer one), exports its model and promotes it through every gate on the server."""
    from medner.registry import loaded_versions, serving_record
    from medner.triton import TritonServer
    from medner.triton_control import ADMIN_KEY_ENV
    from monitoring.triggers import LocalBackend, act, closing_the_loop
    from tests.serve import beatable_champion

    flow_runner.run("data_flow.py", options=["--production"])
    flow_runner.run("data_flow.py", "--dev-fraction", "0.2")  # a researcher's run, newer than production's
    key = "train-flow-test-key"
    repository = beatable_champion(exported_repository, tmp_path / "repository")
    window = {"level": "warning", "window_start": "20261201T110000Z", "window_end": "20261201T120000Z"}
    tiny = {**tiny_training, "uat-min-f1": 0.0}  # untrained: no real UAT
    with TritonServer.on_free_ports(repository, admin_key=key, version=1) as server:
        before = loaded_versions(server.grpc_url, key)
        flow_runner.env[ADMIN_KEY_ENV] = key
        backend, log = LocalBackend(env=flow_runner.env, cwd=flow_runner.root), tmp_path / "decisions.jsonl"
        parameters = closing_the_loop({"TrainFlow": tiny}, str(repository), server.grpc_url)
        decision = act(window, backend, log, parameters=parameters)
        after = loaded_versions(server.grpc_url, key)
        again = act({**window, "window_end": "20261201T130000Z"}, backend, log, parameters=parameters)
    assert (before, after) == ({"ner": [1], "ner_int8": [1]}, {"ner": [2], "ner_int8": [2]})  # the flow's model
    assert decision["status"] == "triggered" and decision["run_status"] == "successful", decision
    assert decision["parameters"]["promote-url"] == server.grpc_url
    # the same drift episode an hour later: within the cooldown, recorded, nothing started
    assert again["status"] == "deduplicated" and again["deduplicated_by"] == decision["target"]

    result = flow_runner.client(
        "from medner.steps import model_from_run\n"
        "from medner.runs import latest_successful_run\n"
        "data_runs = {r.pathspec: sorted(t for t in r.tags if t.startswith('project')) for r in Flow('DataFlow')}\n"
        "data, mine = latest_successful_run('DataFlow', 'prod'), latest_successful_run('DataFlow', 'user')\n"
        "run = Flow('TrainFlow').latest_successful_run\n"
        "try:\n"
        "    model_from_run(branch='user')\n"
        "    error = ''\n"
        "except ValueError as err:\n"
        "    error = str(err)\n"
        "from metaflow.cards import get_cards\n"
        "html = get_cards(run['evaluate'].task)[0].get()\n"
        "result = dict(metrics=run.data.metrics, source=run.data.data_source, version=run.data.data_version,"
        " data_runs=data_runs, data_pathspec=data.pathspec, mine=mine.pathspec, data_version=data.data.data_version,"
        " files=sorted(run.data.model_files), exported_by_default=model_from_run().lineage['source'],"
        " pathspec=run.pathspec, error=error, config=run.data.config, card=html, tags=sorted(run.tags),"
        " runs=[r.pathspec for r in Flow('TrainFlow')], exported=run.data.exported_version,"
        " promotion=run.data.promotion)"
    )
    production, researcher = sorted(result["data_runs"], key=lambda p: int(p.split("/")[1]))
    # the researcher's namespace (user:medner-tests) holds both runs, each tagged with its branch
    assert result["data_runs"] == {production: ["project:medner", "project_branch:prod"],
                                   researcher: ["project:medner", "project_branch:user.medner-tests"]}
    assert (result["data_pathspec"], result["mine"]) == (production, researcher)
    assert result["runs"] == [result["pathspec"]] == [decision["target"]] and "project_branch:prod" in result["tags"]
    assert result["source"] == production  # the production TrainFlow trained on production data, not the newer run
    assert result["exported_by_default"] == result["pathspec"]  # `medner export` reads the prod branch
    assert "no successful TrainFlow run on branch 'user.medner-tests' of project medner" in result["error"]
    promotion = result["promotion"]
    assert result["exported"] == 2 and "champion" in result["tags"]  # promotion tagged the run that now serves
    assert promotion["action"] == "promote" and promotion["version"] == 2 and promotion["champion"] == 1
    lineage = json.loads((repository / "ner_encoder" / "2" / "lineage.json").read_text())
    assert lineage["source"] == result["pathspec"] and lineage["gates"]["parity"]["passed"]
    assert serving_record(repository)["version"] == 2 and serving_record(repository)["previous"] == [1]

    assert METRIC_KEYS <= set(result["metrics"])
    assert all(0.0 <= result["metrics"][k] <= 1.0 for k in METRIC_KEYS - {"train_seconds"})
    assert result["version"] == result["data_version"]
    assert {"config.json", "tokenizer.json", "span_edges.json"} <= set(result["files"])
    assert result["config"]["max_steps"] == 4 and result["config"]["decode"] == "viterbi"
    card = json.dumps(card_data(result["card"]))
    assert f"Test entity F1 {result['metrics']['entity_f1']:.3f}" in card
    assert "Where the errors are" in card and "boundary and type" in card and "precision" in card
    gold_categories = ("exact", "boundary", "wrong_type", "boundary_and_type", "missed")
    assert sum(result["metrics"][f"errors_{c}_{t}"] for c in gold_categories for t in "DT") == (
        result["metrics"]["support_D"] + result["metrics"]["support_T"])  # each gold entity in one category
    assert card.count('"type": "image"') == 2  # learning curve and confusion matrix


def test_a_train_flow_failing_midway_leaves_the_registry_untouched(flow_runner, tmp_path, tiny_training) -> None:
    repository = tmp_path / "repository"
    (repository / "ner" / "1").mkdir(parents=True)
    (repository / "serving.json").write_text('{"version": 1, "previous": [], "history": []}')
    before = sorted((str(p), p.stat().st_mtime_ns) for p in repository.rglob("*"))
    proc = flow_runner.run("train_flow.py", *flow_options({**tiny_training, "base-model": tmp_path / "no-such-model"}),
                           "--repository", str(repository), check=False)
    assert proc.returncode != 0 and "train" in proc.stdout + proc.stderr
    assert sorted((str(p), p.stat().st_mtime_ns) for p in repository.rglob("*")) == before


def test_a_student_distils_from_a_train_flow_run(flow_runner, tmp_path, tiny_training) -> None:
    """--teacher names a TrainFlow run: its model is written once into the cache, the student learns from it on
    the training sentences and their teacher-labelled copies, and the config names the teacher as given."""
    cache = tmp_path / "cache"
    flow_runner.env["MEDNER_CACHE_DIR"] = str(cache)
    tiny = flow_options(tiny_training)
    flow_runner.run("train_flow.py", *tiny)
    teacher = flow_runner.client("result = Flow('TrainFlow').latest_successful_run.pathspec")
    flow_runner.run("train_flow.py", *tiny, "--teacher", teacher, "--distill-copies", "1")
    student = flow_runner.client(
        "run = Flow('TrainFlow').latest_successful_run\n"
        "result = dict(pathspec=run.pathspec, config=run.data.config, history=run.data.history,"
        " train=len(run.data.train_data))")
    assert student["pathspec"] != teacher
    assert student["config"]["teacher"] == teacher and student["config"]["distill_copies"] == 1
    assert student["history"][0]["train_sentences"] == 2 * student["train"]  # + one copy of each
    assert (cache / "models" / teacher.replace("/", "-") / "config.json").is_file()
    proc = flow_runner.run("train_flow.py", *tiny, "--teacher", "no-such-run", check=False)
    assert proc.returncode != 0 and "neither a model folder nor a run pathspec" in proc.stdout + proc.stderr

    # the two runs as one seed ensemble (their mean probabilities): one exported, gated version
    repository, both = tmp_path / "repository", f"{teacher},{student['pathspec']}"
    exported = subprocess.run([sys.executable, "-m", "medner.cli", "export", "--run", both, "--repository",
                               str(repository)], cwd=flow_runner.root, env=flow_runner.env, capture_output=True,
                              text=True, timeout=900)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert json.loads(exported.stdout)["gates"]["parity"]["passed"]
    record = json.loads((repository / "ner_encoder" / "1" / "lineage.json").read_text())
    assert record["ensemble"] == [teacher, student["pathspec"]] and record["source"] == both


def test_promote_without_a_server_writes_the_record_the_fleet_follows(flow_runner, exported_repository,
                                                                      tmp_path, tiny_training) -> None:
    """--promote with no server address (a Batch task reaches the bucket, not the pods): every gate, then the
    record that every `medner serve` following the registry switches to (tests/medner/test_promotion.py)."""
    from tests.serve import beatable_champion

    repository = beatable_champion(exported_repository, tmp_path / "repository")
    flow_runner.run("train_flow.py", *flow_options(tiny_training), "--repository", str(repository), "--promote", "True",
                    "--uat-min-f1", "0")  # an untrained model: no real acceptance threshold
    record = json.loads((repository / "serving.json").read_text())
    assert (record["version"], record["previous"]) == (2, [1])
    assert [g["name"] for g in record["history"][-1]["gates"]] == ["export", "quality", "uat", "smoke"]
