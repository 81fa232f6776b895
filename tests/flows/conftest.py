"""Run flows through Metaflow, each test in its own local datastore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

FLOWS = Path(__file__).resolve().parents[2] / "flows"


@dataclass
class FlowRunner:
    root: Path
    env: dict[str, str]

    def command(self, flow: str, *args: str, options: Sequence[str] = (), verb: str = "run") -> list[str]:
        return [sys.executable, str(FLOWS / flow), "--no-pylint", *options, verb, *args]

    def run(self, flow: str, *args: str, check: bool = True, options: Sequence[str] = (), verb: str = "run"
            ) -> subprocess.CompletedProcess:
        """``python flows/<flow> OPTIONS run ARGS`` (``verb``: or ``resume``) with the datastore under ``root``
        (OPTIONS: top-level, such as ``--production``)."""
        proc = subprocess.run(
            self.command(flow, *args, options=options, verb=verb),
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=900,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{flow} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc

    def client(self, code: str) -> object:
        """Evaluate ``code`` (which sets ``result``) with the Metaflow Client API in this datastore."""
        script = f"import json\nfrom metaflow import Flow, Run\n{code}\nprint(json.dumps(result))"
        proc = subprocess.run([sys.executable, "-c", script], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])


def flow_options(parameters: dict[str, object]) -> list[str]:
    """``{"max-steps": 4}`` as a flow's command line takes it: ``["--max-steps", "4"]``."""
    return [part for name, value in parameters.items() for part in (f"--{name}", str(value))]


@pytest.fixture
def flow_runner(tmp_path: Path, tiny_corpus: Path) -> FlowRunner:
    env = {
        **os.environ,
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path),
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DEFAULT_METADATA": "local",
        "MEDNER_DATA_DIR": str(tiny_corpus),
        "USERNAME": "medner-tests",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WHYLOGS_NO_ANALYTICS": "1",
    }
    return FlowRunner(tmp_path, env)


def card_data(html: str) -> dict:
    """The components of a Metaflow card: the HTML carries them as base64-encoded JSON."""
    import base64
    import re

    match = re.search(r'window\.__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', html)
    assert match, "no card data in the HTML"
    return json.loads(base64.b64decode(match.group(1)))
