"""TrainFlow deploys to AWS Step Functions with its weekly schedule and a GPU train step: `step-functions
create` against a real AWS endpoint (a moto server on 127.0.0.1) with the S3 datastore."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from medner.triton import free_ports
from tests.flows.conftest import FLOWS

pytestmark = pytest.mark.slow
ROLE = "arn:aws:iam::123456789012:role/metaflow"


@pytest.fixture
def moto_endpoint():
    """A moto server on a free 127.0.0.1 port, stopped after the test."""
    [port] = free_ports(1)
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.3)
    yield url
    server.terminate()
    server.wait(30)


def aws(url: str, service: str):
    import boto3

    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def batch_queue(url: str) -> str:
    """What `--with batch` needs in the account: a managed compute environment and a job queue."""
    ec2 = aws(url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="batch", Description="batch", VpcId=vpc)["GroupId"]
    iam = aws(url, "iam")
    role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    profile = iam.create_instance_profile(InstanceProfileName="batch")["InstanceProfile"]["Arn"]
    batch = aws(url, "batch")
    environment = batch.create_compute_environment(
        computeEnvironmentName="gpu", type="MANAGED", state="ENABLED", serviceRole=role,
        computeResources={"type": "EC2", "minvCpus": 0, "maxvCpus": 16, "instanceTypes": ["t2.medium"],
                          "subnets": [subnet], "securityGroupIds": [group], "instanceRole": profile})
    return batch.create_job_queue(jobQueueName="gpu", state="ENABLED", priority=1, computeEnvironmentOrder=[
        {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}])["jobQueueArn"]


def test_train_flow_deploys_to_step_functions_with_schedule_and_gpu(moto_endpoint: str, tmp_path: Path) -> None:
    aws(moto_endpoint, "s3").create_bucket(Bucket="medner-flows")
    queue = batch_queue(moto_endpoint)
    env = {
        **os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_endpoint,
        "METAFLOW_S3_ENDPOINT_URL": moto_endpoint, "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": "s3://medner-flows/metaflow", "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_BATCH_JOB_QUEUE": queue, "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": ROLE,
        "METAFLOW_SFN_IAM_ROLE": ROLE, "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": ROLE,
        "METAFLOW_SFN_DYNAMO_DB_TABLE": "metaflow-sfn", "USERNAME": "medner-tests",
    }
    proc = subprocess.run([sys.executable, str(FLOWS / "train_flow.py"), "--no-pylint", "step-functions", "create"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    sfn = aws(moto_endpoint, "stepfunctions")
    [machine] = sfn.list_state_machines()["stateMachines"]
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"])
    assert machine["name"] == "TrainFlow" and definition["StartAt"] == "start"
    assert list(definition["States"]) == ["start", "train", "evaluate", "end"]
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
    assert any(n.endswith("medner/inference.py") for n in names) and any(n.endswith("train_flow.py") for n in names)
