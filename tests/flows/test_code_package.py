"""Flows run from Metaflow's code package alone, as on AWS Batch: each flow's package is built (``package save``,
the code ``step-functions create`` uploads), unpacked into an empty folder, and run there with the project's own
install hidden (a ``sitecustomize`` drops the editable install's finder), so a package the flows forget to carry
fails here instead of on Batch. The locked requirements stay installed, as in the Batch image."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.flows.conftest import FLOWS

pytestmark = pytest.mark.slow

FLOW_FILES = ("data_flow.py", "train_flow.py", "experiment_flow.py", "monitor_flow.py")
HIDE_PROJECT = '''import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
'''


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> dict[str, str]:
    """The environment of a Batch task: the requirements, not the project (no editable install, no PYTHONPATH)."""
    site = tmp_path_factory.mktemp("sitecustomize")
    (site / "sitecustomize.py").write_text(HIDE_PROJECT)
    return {**os.environ, "PYTHONPATH": str(site), "USERNAME": "medner-tests", "MEDNER_DATA_DIR": str(tiny_corpus),
            "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "WHYLOGS_NO_ANALYTICS": "1"}


def unpacked(flow: str, folder: Path, env: dict[str, str]) -> Path:
    """``flow``'s code package, built as Metaflow builds it and unpacked into ``folder/code``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "package.tgz"
    subprocess.run([sys.executable, str(FLOWS / flow), "--no-pylint", "package", "save", str(archive)], cwd=folder,
                   env={**env, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(folder)}, check=True, capture_output=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "code", filter="data")
    return folder / "code"


def step_imports(flow_file: Path) -> list[str]:
    """The import statements inside each ``@step`` of a flow (flows import heavy modules inside steps)."""
    tree = ast.parse(flow_file.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(getattr(d, "id", "") == "step" for d in node.decorator_list):
            lines += [ast.unparse(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return lines


def test_the_project_is_hidden_from_a_bare_task(bare_env: dict[str, str], tmp_path: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import medner"], cwd=tmp_path, env=bare_env, capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "No module named 'medner'" in probe.stderr


@pytest.mark.parametrize("flow", FLOW_FILES)
def test_every_step_imports_from_the_code_package_alone(flow: str, bare_env: dict[str, str], tmp_path: Path) -> None:
    code = unpacked(flow, tmp_path, bare_env)
    imports = step_imports(code / flow)
    assert imports, f"{flow}: no imports inside steps found"
    script = "\n".join([*imports, "import medner, monitoring",
                        "assert all(m.__file__.startswith(sys.argv[1]) for m in (medner, monitoring))"])
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + script, str(code)], cwd=code, env=bare_env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if "def publish" in (code / flow).read_text():  # exports (config templates) and promotes (acceptance notes)
        assert (code / "medner" / "acceptance.jsonl").is_file() and (code / "model_repository" / "ner" /
                                                                     "config.pbtxt").is_file()


def test_data_and_train_flows_run_from_the_unpacked_package(bare_env: dict[str, str], tmp_path: Path) -> None:
    """Two flows end to end the way Batch runs them (their publish steps' files: the imports test above)."""
    env = {**bare_env, "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path)}
    for flow, args in (("data_flow.py", []),
                       ("train_flow.py", ["--epochs", "1", "--batch-size", "8", "--threads", "1", "--max-steps", "2"])):
        code = unpacked(flow, tmp_path / flow.removesuffix(".py"), bare_env)
        proc = subprocess.run([sys.executable, flow, "--no-pylint", "run", *args], cwd=code, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "test entity F1" in proc.stdout
