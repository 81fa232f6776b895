"""TrainFlow deploys to AWS Step Functions with its weekly schedule and a GPU train step: `step-functions
create` against a real AWS endpoint (a moto server on 127.0.0.1) with the S3 datastore."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.aws import aws, batch_queue, sfn_env
from tests.flows.conftest import FLOWS

pytestmark = pytest.mark.slow


def test_train_flow_deploys_to_step_functions_with_schedule_and_gpu(moto_endpoint: str, tmp_path: Path) -> None:
    aws(moto_endpoint, "s3").create_bucket(Bucket="medner-flows")
    queue = batch_queue(moto_endpoint)
    env = sfn_env(moto_endpoint, queue)
    command = [sys.executable, str(FLOWS / "train_flow.py"), "--no-pylint", "--production", "step-functions", "create"]
    proc = subprocess.run(command,
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    sfn = aws(moto_endpoint, "stepfunctions")
    [machine] = sfn.list_state_machines()["stateMachines"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"])
    assert machine["name"] == "medner.prod.TrainFlow" and definition["StartAt"] == "start"  # @project, --production
    assert list(definition["States"]) == ["start", "train", "evaluate", "publish", "end"]
    resources = {step: {r["Type"]: r["Value"] for r in
                        state["Parameters"]["ContainerOverrides"]["ResourceRequirements"]}
                 for step, state in definition["States"].items()}
    assert resources["train"] == {"GPU": "1", "VCPU": "4", "MEMORY": "16000"}  # @resources on train only
    assert "GPU" not in resources["start"] and "GPU" not in resources["evaluate"]
    assert all(state["Parameters"]["JobQueue"] == queue for state in definition["States"].values())

    events = aws(moto_endpoint, "events")
    [rule] = events.list_rules()["Rules"]
    assert rule["ScheduleExpression"] == "cron(0 0 ? * SUN *)"  # @schedule(weekly=True)
    [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == machine["stateMachineArn"]

    # the code package carries the core package (flows/medner links to it), so Batch tasks can import it
    s3 = aws(moto_endpoint, "s3")
    [package] = [o["Key"] for o in s3.list_objects_v2(Bucket="medner-flows")["Contents"] if "/data/" in o["Key"]]
    archive = tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket="medner-flows", Key=package)["Body"].read()))
    names = archive.getnames()
    assert any(n.endswith("medner/inference/__init__.py") for n in names)
    assert any(n.endswith("train_flow.py") for n in names)


def test_extract_flow_deploys_with_a_parallel_extract_step(moto_endpoint: str, tmp_path: Path) -> None:
    aws(moto_endpoint, "s3").create_bucket(Bucket="medner-flows")
    env = sfn_env(moto_endpoint, batch_queue(moto_endpoint))
    command = [sys.executable, str(FLOWS / "extract_flow.py"), "--no-pylint", "--production", "step-functions",
               "create", "--max-workers", "8"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    sfn = aws(moto_endpoint, "stepfunctions")
    [machine] = sfn.list_state_machines()["stateMachines"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"])
    assert machine["name"] == "medner.prod.ExtractFlow"
    # the foreach: the shard count read back (#extract), then a Map state running the shards, 8 at a time
    assert list(definition["States"]) == ["start", "#extract", "*extract", "join", "end"]
    shards = definition["States"]["*extract"]
    assert shards["Type"] == "Map" and shards["MaxConcurrency"] == 8 and shards["Next"] == "join"
    [task] = shards["Iterator"]["States"].values()
    requirements = {r["Type"]: r["Value"] for r in
                    task["Parameters"]["ContainerOverrides"]["ResourceRequirements"]}
    assert requirements == {"VCPU": "2", "MEMORY": "4096"}  # @resources on the extract step
    s3 = aws(moto_endpoint, "s3")
    [package] = [o["Key"] for o in s3.list_objects_v2(Bucket="medner-flows")["Contents"] if "/data/" in o["Key"]]
    names = tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket="medner-flows", Key=package)["Body"].read())
                         ).getnames()
    assert any(n.endswith("records/migrations/versions/0001_records.py") for n in names)  # the worker migrates


def test_monitor_flow_deploys_hourly_with_the_deployer_s_settings(moto_endpoint: str, tmp_path: Path) -> None:
    """Deployed, MonitorFlow runs in a container with none of the deployer's files: where the profiles, the model
    repository and the decision log are, and that flows start on Step Functions, are read from the deployer's
    environment at `step-functions create` and travel with the state machine."""
    aws(moto_endpoint, "s3").create_bucket(Bucket="medner-flows")
    settings = {"MEDNER_PROFILE_DIR": "s3://ops/profiles", "MEDNER_REPOSITORY": "s3://models/ner",
                "MEDNER_DECISION_LOG": "s3://ops/decisions", "MEDNER_TRIGGER_BACKEND": "stepfunctions"}
    env = {**sfn_env(moto_endpoint, batch_queue(moto_endpoint)), **settings}
    command = [sys.executable, str(FLOWS / "monitor_flow.py"), "--no-pylint", "--production", "step-functions",
               "create"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    sfn = aws(moto_endpoint, "stepfunctions")
    [machine] = sfn.list_state_machines()["stateMachines"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"])
    assert machine["name"] == "medner.prod.MonitorFlow" and list(definition["States"]) == ["start", "check", "act",
                                                                                           "end"]
    environment = {e["Name"]: e.get("Value") for e in
                   definition["States"]["start"]["Parameters"]["ContainerOverrides"]["Environment"]}
    defaults = json.loads(environment["METAFLOW_DEFAULT_PARAMETERS"])  # what a scheduled execution runs with
    assert {name: defaults[name] for name in ("profile-dir", "repository", "decision-log", "trigger-backend")} == {
        "profile-dir": "s3://ops/profiles", "repository": "s3://models/ner", "decision-log": "s3://ops/decisions",
        "trigger-backend": "stepfunctions"}
    [rule] = aws(moto_endpoint, "events").list_rules()["Rules"]
    assert rule["ScheduleExpression"] == "cron(0 * * * ? *)"  # @schedule(hourly=True)
