"""The Kubernetes manifests validate against the Kubernetes API schemas (kubernetes-validate, strict:
unknown fields are errors) and keep the properties serving depends on."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

MANIFESTS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "k8s").glob("*.yaml"))
DOCUMENTS = [(path.name, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_is_valid_kubernetes(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_deployments_run_medner_serve_on_the_champion_in_s3_with_the_admin_key_secret() -> None:
    from typer.main import get_command

    from medner.cli import app

    serve = get_command(app).commands["serve"]
    config = next(doc for _, doc in DOCUMENTS if doc["kind"] == "ConfigMap")["data"]
    deployments = {doc["metadata"]["name"]: doc for _, doc in DOCUMENTS if doc["kind"] == "Deployment"}
    assert set(deployments) == {"medner-triton-gpu", "medner-triton-cpu"}  # the CPU one beside the GPU one
    for name, gpu in (("medner-triton-gpu", True), ("medner-triton-cpu", False)):
        pod = deployments[name]["spec"]["template"]
        [triton] = pod["spec"]["containers"]
        args = [arg.replace("$(MEDNER_REPOSITORY)", config["MEDNER_REPOSITORY"])
                .replace("$(MEDNER_PROFILE_DIR)", config["MEDNER_PROFILE_DIR"]) for arg in triton["args"]]
        options = serve.make_context("serve", args).params  # medner's own parser: a renamed option fails here
        assert options["repository"].startswith("s3://") and options["profile_dir"].startswith("s3://")
        assert (options["gpu"], options["host"]) == (gpu, "0.0.0.0")
        mounts = {m["name"]: m["mountPath"] for m in triton["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert str(options["admin_key_file"].parent) == mounts["admin-key"]  # the key comes from the Secret
        assert volumes["admin-key"]["secret"]["secretName"] == "medner-admin-key"
        assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/models/ner/ready"  # the champion is loaded
        assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert ("nvidia.com/gpu" in triton["resources"]["limits"]) is gpu
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8002"
        assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}
        assert pod["spec"]["serviceAccountName"] == "medner-serving"
    services = [doc["spec"] for _, doc in DOCUMENTS if doc["kind"] == "Service"]
    assert {spec.get("type", "ClusterIP") for spec in services} == {"ClusterIP"}  # not public
    headless = {spec["selector"]["app.kubernetes.io/name"] for spec in services if spec.get("clusterIP") == "None"}
    assert headless == set(deployments)  # every ready pod in DNS: gRPC clients can balance across replicas


def test_pods_meet_pod_security_restricted_and_a_network_policy_admits_clients_only() -> None:
    """The fields of Kubernetes' "restricted" Pod Security Standard these pods use, and a NetworkPolicy selecting
    every serving pod: callers labelled medner.io/client reach HTTP and gRPC, the monitoring namespace reaches the
    metrics, egress is DNS and HTTPS."""
    deployments = [doc for _, doc in DOCUMENTS if doc["kind"] == "Deployment"]
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False  # no Kubernetes API token in the pod
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
        assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))
        assert all(set(volume) - {"name"} <= {"secret", "emptyDir", "configMap", "projected"}
                   for volume in pod["volumes"])  # no hostPath
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["runAsNonRoot"] is True
            assert context["capabilities"] == {"drop": ["ALL"]} and context["readOnlyRootFilesystem"] is True
            assert "hostPort" not in str(container["ports"])
    [policy] = [doc["spec"] for _, doc in DOCUMENTS if doc["kind"] == "NetworkPolicy"]
    [selected] = policy["podSelector"]["matchExpressions"]
    assert set(selected["values"]) == {d["metadata"]["name"] for d in deployments} and selected["operator"] == "In"
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    admitted = {(rule["from"][0].get("podSelector", {}).get("matchLabels", {}).get("medner.io/client"),
                 tuple(sorted(p["port"] for p in rule["ports"]))) for rule in policy["ingress"]}
    assert admitted == {("true", (8000, 8001)), (None, (8002,))}
    assert sorted(p["port"] for rule in policy["egress"] for p in rule["ports"]) == [53, 53, 443]


def test_the_image_is_a_patched_triton_pinned_by_digest_with_the_serving_set_only() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile").read_text()
    lines = dockerfile.splitlines()
    arguments = dict(line.split()[1].split("=", 1) if "=" in line else (line.split()[1], "")
                     for line in lines if line.startswith("ARG "))
    [base] = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert base == "nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3@${TRITON_DIGEST}"  # a digest, or no build
    assert arguments["TRITON_DIGEST"] == ""  # given at build time, never a tag alone
    year, month = map(int, arguments["TRITON_RELEASE"].split("."))
    assert (year, month) >= (25, 7)  # NVIDIA's August 2025 fixes (CVE-2025-23310/23311/23319/23320/23334)
    installs = " ".join(line for line in lines if line.startswith(("RUN", "    ")))
    assert '".[serve]"' in installs and "-c requirements.lock" in installs  # the serving set, at the lock's pins
    assert "torch" not in installs and "-r requirements.lock" not in installs and "[dev]" not in installs
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    assert {"medner", "export", "clients", "monitoring", "review", "model_repository"} <= copied
    assert "MEDNER_TRITON_HOME=/opt/tritonserver" in dockerfile and 'ENTRYPOINT ["medner", "serve"]' in dockerfile
