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


def test_triton_deployment_serves_the_gpu_repository_with_health_probes_and_metrics() -> None:
    kinds = {doc["kind"]: doc for _, doc in DOCUMENTS}
    pod = kinds["Deployment"]["spec"]["template"]
    [triton] = pod["spec"]["containers"]
    assert "--model-config-name=gpu" in triton["args"]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}
    assert kinds["Service"]["spec"]["type"] == "ClusterIP"  # never a public LoadBalancer by default
