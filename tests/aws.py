"""A moto server on 127.0.0.1 (a real AWS endpoint for boto3 and Metaflow) and what flows need in it; LocalStack
where moto only stores (CloudWatch alarms)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from medner.triton import free_ports

ROLE = "arn:aws:iam::123456789012:role/metaflow"
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}  # what moto accepts; set in the environment of tests
ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows"
LOCALSTACK_PYTHON = ROOT / ".venv-localstack" / "bin" / "python"  # the Makefile installs it


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free 127.0.0.1 port, once it answers (a server that never does fails by the suite's
    per-test timeout); yields its URL, stops it afterwards."""
    [port] = free_ports(1)
    with _serving([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], os.environ,
                  f"http://127.0.0.1:{port}", "/moto-api/", subprocess.DEVNULL) as url:
        yield url


@contextmanager
def localstack_server(services: str, work: Path) -> Iterator[str]:
    """LocalStack (``services``, comma-separated) on a free 127.0.0.1 port, its files under ``work``: for what moto
    only stores, such as CloudWatch alarms, which LocalStack evaluates. Yields its URL once it answers."""
    if not LOCALSTACK_PYTHON.exists():
        raise RuntimeError(f"{LOCALSTACK_PYTHON} is missing: `make test` installs LocalStack into .venv-localstack")
    [port] = free_ports(1)
    environment = {
        **os.environ, **TEST_CREDENTIALS, "SERVICES": services, "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_SERVER": "hypercorn",  # its Twisted server needs service_identity, which the lock leaves out
        "DNS_ADDRESS": "0", "SKIP_SSL_CERT_DOWNLOAD": "1", "DISABLE_EVENTS": "1",  # offline: no DNS, no analytics
        "LOCALSTACK_VOLUME_DIR": str(work / "volume"), "FILESYSTEM_ROOT": str(work / "filesystem"),
    }
    work.mkdir(parents=True, exist_ok=True)
    with (work / "localstack.log").open("w") as log, _serving(
            [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"], environment, f"http://127.0.0.1:{port}",
            "/_localstack/health", log) as url:
        yield url


@contextmanager
def _serving(command: list[str], environment: Mapping[str, str], url: str, probe: str, log: IO | int
             ) -> Iterator[str]:
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}{probe}", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    where = f" (its log: {log.name})" if hasattr(log, "name") else ""
                    raise RuntimeError(f"{command[-1]} exited with code {server.returncode}{where}") from None
                time.sleep(0.3)
        yield url
    finally:
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


def sfn_env(url: str, queue: str, bucket: str = "medner-flows") -> dict[str, str]:
    """The environment `step-functions create` needs against the moto server (S3 datastore in ``bucket``)."""
    return {
        **os.environ, **TEST_CREDENTIALS, "AWS_ENDPOINT_URL": url,
        "METAFLOW_S3_ENDPOINT_URL": url, "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow", "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_BATCH_JOB_QUEUE": queue, "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": ROLE,
        "METAFLOW_SFN_IAM_ROLE": ROLE, "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": ROLE,
        "METAFLOW_SFN_DYNAMO_DB_TABLE": "metaflow-sfn", "USERNAME": "medner-tests",
    }


def deploy(flow_files: list[str], url: str, cwd: Path, bucket: str = "medner-flows"
           ) -> list[subprocess.CompletedProcess]:
    """`python flows/<flow_file> --production step-functions create` for each flow against the moto server
    (creates bucket and queue first): the production deployments, the state machines monitoring starts."""
    aws(url, "s3").create_bucket(Bucket=bucket)
    env = sfn_env(url, batch_queue(url), bucket)
    return [subprocess.run([sys.executable, str(FLOWS / flow_file), "--no-pylint", "--production", "step-functions",
                            "create"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
            for flow_file in flow_files]



def placeholder_state_machine(url: str, flow: str) -> str:
    """A one-state machine named as `--production step-functions create` names ``flow``'s production deployment
    (what triggers look up by name), for tests where a real deployment would only cost time; returns its ARN."""
    import json

    definition = {"StartAt": "start", "States": {"start": {"Type": "Pass", "End": True}}}
    return aws(url, "stepfunctions").create_state_machine(
        name=f"medner.prod.{flow}", roleArn=ROLE, definition=json.dumps(definition))["stateMachineArn"]
