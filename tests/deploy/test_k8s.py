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
    assert {doc["spec"]["type"] for _, doc in DOCUMENTS if doc["kind"] == "Service"} == {"ClusterIP"}  # not public


def test_the_image_is_triton_with_a_python_medner_supports() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile").read_text()
    [base] = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    image, tag = base.split(":")
    year, month = map(int, tag.removesuffix("-py3").split("."))
    assert image == "nvcr.io/nvidia/tritonserver" and (year, month) >= (24, 12)  # Python 3.12 from 24.12 on
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    assert {"medner", "export", "clients", "monitoring", "review", "model_repository"} <= copied
    assert "MEDNER_TRITON_HOME=/opt/tritonserver" in dockerfile and 'ENTRYPOINT ["medner", "serve"]' in dockerfile
