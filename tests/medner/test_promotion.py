"""Promotion and rollback against a real Triton server under client load, on a model repository in a bucket (a
moto server on 127.0.0.1) as in production.

The repository holds version 1 (exported by the fixture) and copies of it as challengers whose lineage
claims other test F1 scores, one with a corrupt ONNX file: the gates read lineage, the smoke test serves the
files, so each refusal path is exercised without exporting four models."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clients.local import LocalNerModel
from clients.ner_client import NerClient
from export.onnx_export import next_version
from medner.cli import app
from medner.promotion import PromotionError, promote, rollback
from medner.registry import loaded_versions, write_serving_record
from medner.s3 import opened
from medner.triton_control import ADMIN_KEY_ENV
from tests.aws import TEST_CREDENTIALS, aws
from tests.notes import NOTES
from tests.serve import (
    ADMIN_KEY,
    assert_admin_endpoints_need_the_key,
    listening_addresses,
    read_until,
    served_parts,
    served_version_gauge,
    start_medner_serve,
)

BUCKET, PREFIX = "models", "prod/ner-repo"
URL = f"s3://{BUCKET}/{PREFIX}"
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
    repository = served_parts(exported_repository, tmp_path / "repository")
    add_version(repository, 2, +0.05)
    add_version(repository, 3, +0.10, corrupt=True)
    add_version(repository, 4, -0.05)
    write_serving_record(repository, {"version": 1, "previous": [], "history": []})  # v1 is the champion
    return repository


@pytest.fixture
def bucket(repository: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """``repository`` on a bucket of a moto server, the environment pointing there; returns the endpoint."""
    for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint,
                        "MEDNER_CACHE_DIR": str(tmp_path / "cache"), ADMIN_KEY_ENV: ADMIN_KEY}.items():
        monkeypatch.setenv(name, value)
    aws(moto_endpoint, "s3").create_bucket(Bucket=BUCKET)
    with opened(URL) as mirror:
        shutil.copytree(repository, mirror, dirs_exist_ok=True)
    return moto_endpoint


def on_bucket(endpoint: str) -> tuple[dict, set[str]]:
    """serving.json on the bucket, and the version folders there (``ner/2``)."""
    s3 = aws(endpoint, "s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")["Contents"]
    parts = [item["Key"].split("/") for item in listed]
    folders = {f"{part[2]}/{part[3]}" for part in parts if len(part) > 4 and part[3].isdigit()}
    return json.loads(s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/serving.json")["Body"].read()), folders


def test_serve_a_bucket_and_promote_and_roll_back_there_under_load(repository: Path, bucket: str) -> None:
    """The production path on a bucket, with the commands: `medner serve` reading the bucket itself (the recorded
    champion, not the newest; loopback only; administrative endpoints closed; SIGTERM stops it), `medner extract`,
    and `medner models promote|list|rollback` there while clients call: each refusal (worse, broken, failing the
    acceptance notes), a promotion and a rollback, none failing or changing a request. (Export to a bucket:
    ExperimentFlow's publish step in tests/flows/test_experiment_flow.py; `medner export` is the same call.)"""
    notes = NOTES[:3]
    expected = [[(e["label"], e["start"], e["end"]) for e in a]
                for a in LocalNerModel(repository, version=1, threads=1).extract(notes)]
    cli = CliRunner()
    process, (grpc_port, http_port, metrics_port) = start_medner_serve(URL)
    url = f"127.0.0.1:{grpc_port}"
    where = ["--repository", URL, "--url", url]
    try:
        assert f"Triton ready ({URL} v1)" in read_until(process, "Triton ready")[-1]
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/ner/ready", timeout=5) as response:
            assert response.status == 200
        for port in (grpc_port, http_port, metrics_port):
            addresses = listening_addresses(port)
            assert addresses and addresses <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, (port, addresses)  # loopback only
        assert_admin_endpoints_need_the_key(url, http_port)  # and v1 alone is loaded
        extracted = cli.invoke(app, ["extract", "--url", url], input=NOTES[0] + "\n")
        assert extracted.exit_code == 0, extracted.output
        assert [(e["label"], e["start"], e["end"]) for e in json.loads(extracted.stdout)["entities"]] == expected[0]

        with ClientLoad(url, notes, expected) as load:
            worse = cli.invoke(app, ["models", "promote", "4", *where])
            broken = promote(URL, url, ADMIN_KEY, version=3, uat_min_f1=0.0)
            strict = promote(URL, url, ADMIN_KEY, version=2, uat_min_f1=0.99, keep_refused=True)
        assert worse.exit_code == 1 and "refused v4; v1 keeps serving" in worse.stderr
        assert "quality  FAIL" in worse.stdout and "not better" in worse.stdout
        assert not broken.promoted and broken.gates[-1].name == "smoke" and "does not load" in broken.gates[-1].detail
        assert not strict.promoted and [(g.name, g.passed) for g in strict.gates] == [
            ("export", True), ("quality", True), ("uat", False)]  # the untrained model fails the acceptance notes
        assert "acceptance notes of acceptance.jsonl" in strict.gates[-1].detail
        assert on_bucket(bucket)[1] == {f"{model}/{v}" for model in ("ner", "ner_int8", "ner_encoder")
                                        for v in (1, 2)}  # refused and not kept: deleted from the bucket
        with opened(URL, full=False) as mirror:  # their numbers stay taken: the next export is v5, never v3 or v4
            assert next_version(mirror) == 5
        assert loaded_versions(url, ADMIN_KEY) == {"ner": [1], "ner_int8": [1]}

        with ClientLoad(url, notes, expected) as promoting:
            better = promote(URL, url, ADMIN_KEY, uat_min_f1=0.0)  # the newest left is 2 (kept when refused)
        assert better.promoted, better.gates
        assert [g.name for g in better.gates] == ["export", "quality", "uat", "smoke"]
        assert loaded_versions(url, ADMIN_KEY) == {"ner": [2], "ner_int8": [2]}
        record = on_bucket(bucket)[0]
        assert (record["version"], record["previous"]) == (2, [1])  # the old champion stays for rollback
        listed = cli.invoke(app, ["models", "list", *where])
        assert [line.split()[:2] for line in listed.stdout.splitlines()] == [["v2", "ner,ner_int8"],
                                                                             ["v1", "not"]], listed.output

        with ClientLoad(url, notes, expected) as rolling_back:
            rolled = cli.invoke(app, ["models", "rollback", "--to", "1", *where])
        assert rolled.exit_code == 0 and "rolled back to v1 (was v2)" in rolled.stdout
        assert loaded_versions(url, ADMIN_KEY) == {"ner": [1], "ner_int8": [1]}
        with pytest.raises(PromotionError, match="nothing to roll back"):
            rollback(URL, url, ADMIN_KEY)
        for args, message in ((["--to", "9"], "has no version 9"), (["--to", "1"], "version 1 is already serving")):
            refused = cli.invoke(app, ["models", "rollback", *args, *where])
            assert refused.exit_code == 2 and message in refused.stderr, refused.output
        unkeyed = CliRunner(env={ADMIN_KEY_ENV: ""}).invoke(app, ["models", "rollback", *where, "--admin-key-file",
                                                                  str(repository / "no-key")])
        assert unkeyed.exit_code == 2 and "no admin key" in unkeyed.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0  # a hang fails through the suite's per-test timeout
    finally:
        if process.poll() is None:
            process.terminate()  # lets `medner serve` stop tritonserver
            process.wait(60)

    for run in (load, promoting, rolling_back):
        assert run.sent > 0 and run.failed == 0 and run.wrong == 0, vars(run)
    record = on_bucket(bucket)[0]
    assert record["version"] == 1 and record["previous"] == []
    assert [h["action"] for h in record["history"]] == ["refuse", "refuse", "refuse", "promote", "rollback"]


def test_two_servers_follow_the_registry_through_promotion_rollback_and_a_broken_record(
        repository: Path, bucket: str) -> None:
    """The fleet: two `medner serve` (following the registry, as by default) on one bucket under client load. A
    promotion through one of them switches it at once and the other within its poll; a rollback without --url is
    a record write both follow; a record naming a version that does not load (written by hand, past the gates)
    leaves a replica on the version it served, saying so, and puts back only the models that had moved (a failed
    reload leaves Triton's model as it was). Every replica reports its served version as a gauge; no request
    fails."""
    notes = NOTES[:3]
    expected = [[(e["label"], e["start"], e["end"]) for e in a]
                for a in LocalNerModel(repository, version=1, threads=1).extract(notes)]
    servers = [start_medner_serve(URL, "--follow-seconds", "1") for _ in range(2)]
    (a, ports_a), (b, ports_b) = servers
    url_a, url_b = (f"127.0.0.1:{ports[0]}" for _, ports in servers)
    cli = CliRunner()
    try:
        for process, _ in servers:
            read_until(process, "Triton ready")
        assert [served_version_gauge(ports[2]) for _, ports in servers] == [{"ner": 1, "ner_int8": 1}] * 2
        with ClientLoad(url_a, notes, expected) as load_a:
            with ClientLoad(url_b, notes, expected) as load_b:
                promoted = cli.invoke(app, ["models", "promote", "2", "--repository", URL, "--url", url_a,
                                            "--uat-min-f1", "0"])
                assert promoted.exit_code == 0, promoted.output
                assert f"{url_a} serves it" in promoted.stdout
                assert loaded_versions(url_a, ADMIN_KEY) == {"ner": [2], "ner_int8": [2]}  # at once
                read_until(b, "follow: now serving v2 (was v1)")  # within its poll
                assert loaded_versions(url_b, ADMIN_KEY) == {"ner": [2], "ner_int8": [2]}
                assert [served_version_gauge(ports[2]) for _, ports in servers] == [{"ner": 2, "ner_int8": 2}] * 2

                rolled = cli.invoke(app, ["models", "rollback", "--repository", URL])  # no server: the record alone
                assert rolled.exit_code == 0 and "recorded; servers following the registry" in rolled.stdout, \
                    rolled.output
                for process, _ in servers:
                    read_until(process, "follow: now serving v1 (was v2)")
                assert [loaded_versions(url, ADMIN_KEY) for url in (url_a, url_b)] == [{"ner": [1],
                                                                                        "ner_int8": [1]}] * 2
            b.send_signal(signal.SIGTERM)  # the broken record on one replica: each follows it by the same code
            assert b.wait() == 0

            with opened(URL) as mirror:  # by hand, past the gates: v3's INT8 graph is corrupt
                record = json.loads((mirror / "serving.json").read_text())
                write_serving_record(mirror, {**record, "version": 3})
            lines = read_until(a, "follow: v3 did not load")
            assert "back on v1" in lines[-1], lines[-1]
            # models load in name order: ner_encoder_int8 failed, so ner_int8 and ner_tokenize never moved
            loaded = [line for line in lines if "successfully loaded" in line]
            assert any("'ner_encoder'" in line for line in loaded), loaded
            assert not any("'ner_int8'" in line or "'ner_tokenize'" in line for line in loaded), loaded
            assert loaded_versions(url_a, ADMIN_KEY) == {"ner": [1], "ner_int8": [1]}
            assert served_version_gauge(ports_a[2]) == {"ner": 1, "ner_int8": 1}
        a.send_signal(signal.SIGTERM)
        assert a.wait() == 0
    finally:
        for process, _ in servers:
            if process.poll() is None:
                process.terminate()
                process.wait(60)
    for run in (load_a, load_b):
        assert run.sent > 0 and run.failed == 0 and run.wrong == 0, vars(run)


def test_the_first_champion_is_an_explicit_gated_promotion(exported_repository: Path, tmp_path: Path) -> None:
    """A repository nobody promoted yet: `medner models promote` without a server runs every gate and writes the
    record that servers start from (what `make demo` does after exporting)."""
    repository = served_parts(exported_repository, tmp_path / "repository")
    result = CliRunner().invoke(app, ["models", "promote", "--repository", str(repository), "--uat-min-f1", "0"])
    assert result.exit_code == 0, result.output
    assert "promoted v1 (the first champion): recorded; servers following the registry serve it" in result.stdout
    record = json.loads((repository / "serving.json").read_text())
    assert record["version"] == 1 and record["previous"] == []
    assert [g["name"] for g in record["history"][0]["gates"]] == ["export", "quality", "uat", "smoke"]


def test_listing_and_in_process_extraction_follow_the_champion(repository: Path) -> None:
    listing = CliRunner().invoke(app, ["models", "list", "--repository", str(repository), "--json"])
    rows = {row["version"]: row["serving"] for row in map(json.loads, listing.stdout.splitlines())}
    assert rows == {4: "", 3: "", 2: "", 1: "champion"}
    assert LocalNerModel(repository, threads=1).extract(["Asthma."])  # v1: the newest (4) and v3 are not served
