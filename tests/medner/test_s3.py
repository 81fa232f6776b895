"""The S3 model repository's mirror against a real S3 endpoint (a moto server on 127.0.0.1): two machines'
mirrors of one bucket, incremental pulls, metadata-only pulls, conditional serving.json writes, deletions,
and nothing written when the work in between fails. (Serving, promotion and rollback on a bucket:
tests/medner/test_promotion.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medner.registry import serving_record, versions, write_serving_record
from medner.s3 import S3Mirror, ServingConflict, VersionConflict, opened, split_s3_url, triton_location
from tests.aws import TEST_CREDENTIALS, aws

URL = "s3://models/prod/ner-repo"


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MEDNER_CACHE_DIR", str(tmp_path / "cache"))
    aws(moto_endpoint, "s3").create_bucket(Bucket="models")
    return moto_endpoint


def write_version(repository: Path, version: int, f1: float) -> None:
    for model in ("ner", "ner_int8", "ner_encoder"):
        (repository / model / str(version)).mkdir(parents=True)
        (repository / model / "config.pbtxt").write_text(f'name: "{model}"\n')
        (repository / model / str(version) / "model.onnx").write_bytes(b"onnx bytes " * 100 + bytes([version]))
    (repository / "ner_encoder" / str(version) / "lineage.json").write_text(
        json.dumps({"metrics_fp32": {"entity_f1": f1}}))


def keys(endpoint: str) -> list[str]:
    listed = aws(endpoint, "s3").list_objects_v2(Bucket="models", Prefix="prod/ner-repo/").get("Contents", [])
    return sorted(item["Key"].removeprefix("prod/ner-repo/") for item in listed)


def serving_on_s3(endpoint: str) -> dict:
    return json.loads(aws(endpoint, "s3").get_object(Bucket="models", Key="prod/ner-repo/serving.json")["Body"].read())


def test_two_mirrors_of_one_bucket(bucket: str, tmp_path: Path) -> None:
    with opened(URL) as repository:  # machine A exports two versions
        assert repository.is_dir() and not any(repository.iterdir())  # an empty bucket: an empty mirror
        write_version(repository, 1, 0.60)
        write_version(repository, 2, 0.65)
    models = ("ner", "ner_int8", "ner_encoder")
    assert keys(bucket) == sorted([f"{m}/config.pbtxt" for m in models] + [f"{m}/{v}/model.onnx" for m in models
                                  for v in (1, 2)] + [f"ner_encoder/{v}/lineage.json" for v in (1, 2)])

    other = S3Mirror(URL, tmp_path / "machine-b")  # machine B: metadata only, then the whole repository
    folder = other.pull(full=False)
    assert [(v.version, v.models, v.lineage["metrics_fp32"]["entity_f1"]) for v in versions(folder)] == [
        (1, ["ner", "ner_int8"], 0.60), (2, ["ner", "ner_int8"], 0.65)]
    assert not (folder / "ner" / "1" / "model.onnx").exists()
    other.fetch([2])  # one version's files, as promotion fetches its challenger's
    assert (folder / "ner_int8" / "2" / "model.onnx").exists() and not (folder / "ner" / "1" / "model.onnx").exists()
    other.pull(full=True)
    assert (folder / "ner" / "2" / "model.onnx").read_bytes().endswith(bytes([2]))

    downloads = []
    other.client.download_file = lambda *args, **kwargs: downloads.append(args)
    other.pull(full=True)
    assert downloads == []  # nothing changed on S3: nothing is downloaded again


def test_two_exports_of_one_version_number_do_not_mix(bucket: str, tmp_path: Path) -> None:
    first, second = S3Mirror(URL, tmp_path / "a"), S3Mirror(URL, tmp_path / "b")
    for mirror in (first, second):  # both read an empty repository: both export "version 1"
        write_version(mirror.pull(), 1, 0.60 if mirror is first else 0.70)
    first.push()
    written = {key: aws(bucket, "s3").head_object(Bucket="models", Key=f"prod/ner-repo/{key}")["ETag"]
               for key in keys(bucket)}
    with pytest.raises(VersionConflict, match="another export wrote version 1 .* none of this export's files"):
        second.push()
    assert {key: aws(bucket, "s3").head_object(Bucket="models", Key=f"prod/ner-repo/{key}")["ETag"]
            for key in keys(bucket)} == written  # the first export's version, whole and alone
    assert json.loads(first.pull(full=False).joinpath("ner_encoder/1/lineage.json").read_text()) == {
        "metrics_fp32": {"entity_f1": 0.60}}
    folder = second.pull()  # the loser's mirror matches the bucket again
    assert (folder / "ner" / "1" / "model.onnx").read_bytes() == (first.root / "ner" / "1" / "model.onnx").read_bytes()


def test_serving_json_writes_are_conditional(bucket: str, tmp_path: Path) -> None:
    with opened(URL) as repository:
        write_version(repository, 1, 0.60)
        write_version(repository, 2, 0.65)
    first, second = S3Mirror(URL, tmp_path / "a"), S3Mirror(URL, tmp_path / "b")
    for mirror in (first, second):
        mirror.pull(full=False)  # both read: no serving.json yet
    write_serving_record(first.root, {"version": 1, "previous": [], "history": []})
    write_serving_record(second.root, {"version": 2, "previous": [], "history": []})
    first.push()
    with pytest.raises(ServingConflict, match="changed since this command read it"):
        second.push()
    assert serving_on_s3(bucket)["version"] == 1  # the first writer's record stands

    second.pull(full=False)  # read again, then write: accepted
    assert serving_record(second.root)["version"] == 1
    write_serving_record(second.root, {"version": 2, "previous": [1], "history": []})
    second.push()
    assert serving_on_s3(bucket) == {"version": 2, "previous": [1], "history": []}
    with pytest.raises(ServingConflict):  # the first mirror's copy is stale now
        write_serving_record(first.root, {"version": 1, "previous": [], "history": []})
        first.push()


def test_removed_versions_are_deleted_and_failed_work_is_not_pushed(bucket: str, tmp_path: Path) -> None:
    with opened(URL) as repository:
        write_version(repository, 1, 0.60)
        write_version(repository, 2, 0.65)
    with opened(URL, full=False) as repository:  # a refused version's folders removed (metadata-only mirror)
        for folder in repository.glob("*/2"):
            shutil.rmtree(folder)
    assert not [k for k in keys(bucket) if "/2/" in k] and "ner/1/model.onnx" in keys(bucket)

    before = keys(bucket)
    with pytest.raises(RuntimeError, match="gate failed"), opened(URL) as repository:
        write_version(repository, 3, 0.70)
        raise RuntimeError("gate failed")
    assert keys(bucket) == before  # nothing of the failed export reached S3
    with opened(URL) as repository:  # and the next command's mirror does not carry it either
        assert [v.version for v in versions(repository)] == [1]


def test_s3_locations() -> None:
    assert split_s3_url("s3://models/prod/ner/") == ("models", "prod/ner")
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        split_s3_url("s3:///prefix")
    assert triton_location("s3://models/prod", "http://127.0.0.1:5000") == "s3://127.0.0.1:5000/models/prod"
    assert triton_location("s3://models/prod", "https://minio.internal") == "s3://https://minio.internal:443/models/prod"


@pytest.mark.parametrize("command", [["serve"], ["models", "list"], ["models", "rollback"]])
def test_an_unreachable_bucket_is_one_line_of_error(command: list[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from medner.cli import app
    from medner.triton import free_ports

    [closed] = free_ports(1)  # nothing listens there
    for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}", "AWS_MAX_ATTEMPTS": "1",
                        "MEDNER_CACHE_DIR": str(tmp_path), "MEDNER_ADMIN_KEY": "key"}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, [*command, "--repository", URL])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.startswith(f"error: cannot read {URL}: Could not connect to the endpoint URL")
