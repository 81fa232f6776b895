"""TrainFlow deploys to AWS Step Functions with its weekly schedule and a GPU train step: `step-functions
create` against a real AWS endpoint (a moto server on 127.0.0.1) with the S3 datastore."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.aws import ROOT, TEST_CREDENTIALS, aws, batch_queue, sfn_env
from tests.flows.conftest import FLOWS

pytestmark = pytest.mark.slow

ADMIN_KEY = "medner-admin-key-9f3c1e7a"  # the deployer has it in $MEDNER_ADMIN_KEY: it must reach no deployment
# A flow whose step promotes as TrainFlow's and ExperimentFlow's publish steps do: the admin key from @secrets
SECRET_FLOW = """from metaflow import FlowSpec, environment, secrets, step

from medner.config import admin_key_secret_environment, admin_key_secrets


class SecretFlow(FlowSpec):
    @environment(vars=admin_key_secret_environment())
    @secrets(sources=admin_key_secrets())
    @step
    def start(self):
        import hashlib
        import os

        self.key_sha256 = hashlib.sha256(os.environ["MEDNER_ADMIN_KEY"].encode()).hexdigest()
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SecretFlow()
"""


def _stored_text(url: str) -> str:
    """Everything the deployment left in the account, as text: state machines, Batch job definitions, EventBridge
    rules and targets, and every S3 object (each code package member unpacked)."""
    sfn, batch, events, s3 = (aws(url, service) for service in ("stepfunctions", "batch", "events", "s3"))
    texts = [sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"])["definition"]
             for m in sfn.list_state_machines()["stateMachines"]]
    texts.append(json.dumps(batch.describe_job_definitions()["jobDefinitions"], default=str))
    for rule in events.list_rules()["Rules"]:
        texts.append(json.dumps([rule, events.list_targets_by_rule(Rule=rule["Name"])["Targets"]], default=str))
    for bucket in s3.list_buckets()["Buckets"]:
        for item in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            body = s3.get_object(Bucket=bucket["Name"], Key=item["Key"])["Body"].read()
            try:
                archive = tarfile.open(fileobj=io.BytesIO(body))
                texts += [archive.extractfile(m).read().decode("utf-8", "replace") for m in archive if m.isfile()]
            except tarfile.ReadError:
                texts.append(body.decode("utf-8", "replace"))
    return "\n".join(texts)


def _retries_and_timeouts(states: dict) -> dict[str, tuple[int, int]]:
    """Per Batch task state (a Map's inner task included): (attempts, seconds per attempt) as deployed."""
    tasks = {}
    for name, state in states.items():
        if state["Type"] == "Map":
            tasks.update(_retries_and_timeouts(state["Iterator"]["States"]))
        elif "RetryStrategy" in state.get("Parameters", {}):
            parameters = state["Parameters"]
            tasks[name] = (parameters["RetryStrategy"]["Attempts"], parameters["Timeout"]["AttemptDurationSeconds"])
    return tasks


def test_train_flow_deploys_to_step_functions_with_schedule_and_gpu(moto_endpoint: str, tmp_path: Path) -> None:
    aws(moto_endpoint, "s3").create_bucket(Bucket="medner-flows")
    queue = batch_queue(moto_endpoint)
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:medner/admin-key-AbCdEf"
    env = {**sfn_env(moto_endpoint, queue), "MEDNER_ADMIN_KEY": ADMIN_KEY, "MEDNER_ADMIN_KEY_SECRET": secret}
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
    # the admin key: only the secret's id travels, to the step that promotes; the key itself reaches nothing
    environment = {step: {e["Name"]: e.get("Value") for e in state["Parameters"]["ContainerOverrides"]["Environment"]}
                   for step, state in definition["States"].items()}
    assert environment["publish"]["MEDNER_ADMIN_KEY_SECRET"] == secret
    assert "MEDNER_ADMIN_KEY_SECRET" not in environment["train"]
    assert ADMIN_KEY not in _stored_text(moto_endpoint)

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
    assert _retries_and_timeouts(definition["States"]) == {  # @retry: Batch attempts; @timeout: per attempt
        "start": (3, 3600), "extract": (4, 3 * 3600), "join": (3, 5 * 24 * 3600), "end": (3, 5 * 24 * 3600)}
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
    command = [sys.executable, str(FLOWS / "monitor_flow.py"), "--no-pylint", "--production",
               "--with", "timeout:minutes=15", "step-functions", "create"]  # act's bound in the cloud (docs)
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
    # every step retried (act once: it starts flows under the decision's name); --with timeout bounds act alone
    assert _retries_and_timeouts(definition["States"]) == {
        "start": (3, 1200), "check": (3, 1800), "act": (2, 900), "end": (3, 600)}


def test_the_admin_key_reaches_the_step_from_secrets_manager_and_no_deployment(moto_endpoint: str, tmp_path: Path
                                                                              ) -> None:
    """@secrets (medner.config.admin_key_secrets) sets $MEDNER_ADMIN_KEY from the secret $MEDNER_ADMIN_KEY_SECRET
    names while the step runs; deployed, the state machine carries the secret's id and not the key; without a
    secret a local run reads $MEDNER_ADMIN_KEY as before."""
    arn = aws(moto_endpoint, "secretsmanager").create_secret(Name="medner/admin-key", SecretString=ADMIN_KEY)["ARN"]
    (tmp_path / "secret_flow.py").write_text(SECRET_FLOW)
    local = {**os.environ, **TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint, "PYTHONPATH": str(ROOT),
             "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
             "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path), "USERNAME": "medner-tests"}
    local.pop("MEDNER_ADMIN_KEY", None)
    expected = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    for extra in ({"MEDNER_ADMIN_KEY_SECRET": arn}, {"MEDNER_ADMIN_KEY": ADMIN_KEY}):  # from AWS; as today
        proc = subprocess.run([sys.executable, "secret_flow.py", "--no-pylint", "run"], cwd=tmp_path,
                              env={**local, **extra}, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        read = subprocess.run([sys.executable, "-c", "from metaflow import Flow, namespace; namespace(None); "
                               "print(Flow('SecretFlow').latest_run.data.key_sha256)"], cwd=tmp_path,
                              env=local, capture_output=True, text=True, timeout=300)
        assert read.stdout.strip() == expected, (extra, read.stderr[-2000:])

    aws(moto_endpoint, "s3").create_bucket(Bucket="medner-flows")
    deployer = {**sfn_env(moto_endpoint, batch_queue(moto_endpoint)), "PYTHONPATH": str(ROOT),
                "MEDNER_ADMIN_KEY": ADMIN_KEY, "MEDNER_ADMIN_KEY_SECRET": arn}
    proc = subprocess.run([sys.executable, "secret_flow.py", "--no-pylint", "step-functions", "create"],
                          cwd=tmp_path, env=deployer, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    sfn = aws(moto_endpoint, "stepfunctions")
    [machine] = sfn.list_state_machines()["stateMachines"]
    states = json.loads(sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"])["States"]
    environment = {e["Name"]: e.get("Value")
                   for e in states["start"]["Parameters"]["ContainerOverrides"]["Environment"]}
    assert environment["MEDNER_ADMIN_KEY_SECRET"] == arn and "MEDNER_ADMIN_KEY" not in environment
    assert ADMIN_KEY not in _stored_text(moto_endpoint)
