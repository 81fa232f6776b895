"""Promotion and rollback against a real Triton server under client load.

The repository holds version 1 (exported by the fixture) and copies of it as challengers whose lineage
claims other test F1 scores, one with a corrupt ONNX file: the gates read lineage, the smoke test serves the
files, so each refusal path is exercised without exporting four models."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clients.local import LocalNerModel
from clients.ner_client import NerClient
from medner.cli import app
from medner.promotion import PromotionError, promote, rollback
from medner.registry import loaded_versions, serving_record, write_serving_record
from medner.triton import ADMIN_KEY_ENV, TritonServer
from tests.notes import NOTES

KEY = "promotion-test-key"
pytestmark = pytest.mark.slow


def add_version(repository: Path, version: int, f1_delta: float, corrupt: bool = False) -> None:
    """A copy of version 1 (hard links) as ``version``, whose lineage claims F1 + ``f1_delta``."""
    for source in repository.glob("*/1"):
        shutil.copytree(source, source.parent / str(version), copy_function=os.link)
    lineage_file = repository / "ner_encoder" / str(version) / "lineage.json"
    record = json.loads(lineage_file.read_text())
    record["metrics_fp32"]["entity_f1"] += f1_delta
    lineage_file.unlink()  # a hard link: write a file of its own
    lineage_file.write_text(json.dumps(record))
    if corrupt:  # the INT8 model only: the fp32 one runs in-process (acceptance notes), Triton cannot load the other
        for onnx in repository.glob(f"*int8/{version}/model.onnx"):
            onnx.unlink()
            onnx.write_bytes(b"not an onnx graph")


class ClientLoad:
    """Requests in a loop from another thread, counting failures and answers that differ from ``expected``."""

    def __init__(self, url: str, notes: list[str], expected: list):
        self.url, self.notes, self.expected = url, notes, expected
        self.sent = self.failed = self.wrong = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with NerClient(self.url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    answers = client.extract(self.notes)
                    self.wrong += [[(e["label"], e["start"], e["end"]) for e in a] for a in answers] != self.expected
                except Exception:
                    self.failed += 1
                self.sent += 1
                time.sleep(0.02)  # steady traffic, not a busy loop: the server shares this machine's 2 cores

    def __enter__(self) -> ClientLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()  # a hang fails through the suite's per-test timeout


@pytest.fixture
def repository(exported_repository: Path, tmp_path: Path) -> Path:
    repository = tmp_path / "repository"
    # ner, ner_int8 (what clients call) and ner_encoder (holds lineage); the GPU ensemble's parts would only
    # make every load slower
    shutil.copytree(exported_repository, repository, copy_function=os.link,
                    ignore=shutil.ignore_patterns("ner_tokenize", "ner_decode", "ner_encoder_int8", "serving.json"))
    for config in repository.glob("*/config.pbtxt"):  # one instance per model: half the stubs to start per load
        text = config.read_text()
        config.unlink()  # a hard link into the session's repository: write a file of its own
        config.write_text(re.sub(r"count: \d+", "count: 1", text))
    add_version(repository, 2, +0.05)
    add_version(repository, 3, +0.10, corrupt=True)
    add_version(repository, 4, -0.05)
    write_serving_record(repository, {"version": 1, "previous": [], "history": []})  # v1 is the champion
    return repository


def test_promotion_refusals_success_and_rollback_under_load(repository: Path) -> None:
    notes = NOTES[:3]
    expected = [[(e["label"], e["start"], e["end"]) for e in a]
                for a in LocalNerModel(repository, version=1, threads=1).extract(notes)]
    cli = CliRunner(env={ADMIN_KEY_ENV: KEY})
    with TritonServer.on_free_ports(repository, admin_key=KEY, version=1) as server:
        url = server.grpc_url
        where = ["--repository", str(repository), "--url", url]
        assert loaded_versions(url, KEY) == {"ner": [1], "ner_int8": [1]}  # started on the champion, not the newest

        with ClientLoad(url, notes, expected) as load:
            worse = cli.invoke(app, ["models", "promote", "4", *where])
            broken = promote(repository, url, KEY, version=3, uat_min_f1=0.0)
            strict = promote(repository, url, KEY, version=2, uat_min_f1=0.99, keep_refused=True)
        assert worse.exit_code == 1 and "refused v4; v1 keeps serving" in worse.stderr
        assert "quality  FAIL" in worse.stdout and "not better" in worse.stdout
        assert not broken.promoted and broken.gates[-1].name == "smoke" and "does not load" in broken.gates[-1].detail
        assert not strict.promoted and [(g.name, g.passed) for g in strict.gates] == [
            ("export", True), ("quality", True), ("uat", False)]  # the untrained model fails the acceptance notes
        assert "acceptance notes of acceptance.jsonl" in strict.gates[-1].detail
        assert not list(repository.glob("*/4")) and not list(repository.glob("*/3"))  # refused: removed
        assert loaded_versions(url, KEY) == {"ner": [1], "ner_int8": [1]}

        with ClientLoad(url, notes, expected) as promoting:
            better = promote(repository, url, KEY, uat_min_f1=0.0)  # the newest left is 2 (kept when refused)
        assert better.promoted, better.gates
        assert [g.name for g in better.gates] == ["export", "quality", "uat", "smoke"]
        assert loaded_versions(url, KEY) == {"ner": [2], "ner_int8": [2]}
        assert (repository / "ner" / "1").is_dir()  # the old champion stays for rollback

        with ClientLoad(url, notes, expected) as rolling_back:
            rolled = cli.invoke(app, ["models", "rollback", "--to", "1", *where])
        assert rolled.exit_code == 0 and "rolled back to v1 (was v2)" in rolled.stdout
        assert loaded_versions(url, KEY) == {"ner": [1], "ner_int8": [1]}
        with pytest.raises(PromotionError, match="nothing to roll back"):
            rollback(repository, url, KEY)
        for args, message in ((["--to", "9"], "has no version 9"), (["--to", "1"], "version 1 is already serving")):
            refused = cli.invoke(app, ["models", "rollback", *args, *where])
            assert refused.exit_code == 2 and message in refused.stderr, refused.output
        unkeyed = CliRunner(env={ADMIN_KEY_ENV: ""}).invoke(app, ["models", "rollback", *where, "--admin-key-file",
                                                                  str(repository / "no-key")])
        assert unkeyed.exit_code == 2 and "no admin key" in unkeyed.stderr

    for run in (load, promoting, rolling_back):
        assert run.sent > 0 and run.failed == 0 and run.wrong == 0, vars(run)
    record = serving_record(repository)
    assert record["version"] == 1 and record["previous"] == []
    assert [h["action"] for h in record["history"]] == ["refuse", "refuse", "refuse", "promote", "rollback"]


def test_listing_and_in_process_extraction_follow_the_champion(repository: Path) -> None:
    listing = CliRunner().invoke(app, ["models", "list", "--repository", str(repository), "--json"])
    rows = {row["version"]: row["serving"] for row in map(json.loads, listing.stdout.splitlines())}
    assert rows == {4: "", 3: "", 2: "", 1: "champion"}
    assert LocalNerModel(repository, threads=1).extract(["Asthma."])  # v1: the newest (4) and v3 are not served
