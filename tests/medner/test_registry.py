from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medner.cli import app
from medner.registry import (
    SERVING_FILE,
    champion,
    code_version,
    describe,
    loaded_versions,
    serving_record,
    versions,
    write_serving_record,
)


def test_versions_carry_their_lineage_and_code_version(exported_repository: Path) -> None:
    [entry] = versions(exported_repository)
    assert entry.version == 1 and entry.models == ["ner", "ner_int8"]
    assert entry.lineage["source"] == "tests" and entry.lineage["gates"]["parity"]["passed"]
    assert entry.lineage["code_version"] == code_version() != "unknown"


def test_without_a_server_the_champion_is_marked(exported_repository: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(exported_repository, repository, ignore=shutil.ignore_patterns(SERVING_FILE))
    (repository / "ner" / "2").mkdir()  # a newer version with no lineage and no INT8 model
    assert champion(repository) == 2  # never promoted: in-process tools take the newest (a server refuses)
    write_serving_record(repository, {"version": 2, "previous": [], "history": []})
    assert serving_record(repository)["version"] == 2
    (repository / "ner" / "3").mkdir()
    assert champion(repository) == 2  # exported later: serves only once promoted
    rows = describe(versions(repository), None, champion(repository))
    assert [(r["version"], r["serving"], r["models"]) for r in rows] == [
        (3, "", ["ner"]), (2, "champion", ["ner"]), (1, "", ["ner", "ner_int8"])]
    assert rows[0]["entity_f1_fp32"] is None and rows[2]["gates"] == {"parity": True, "int8_quality": True}


@pytest.mark.slow
def test_models_list_shows_what_the_server_has_loaded(triton_server, exported_repository: Path) -> None:
    assert loaded_versions(triton_server.grpc_url) == {"ner": [1], "ner_int8": [1]}
    result = CliRunner().invoke(app, ["models", "list", "--repository", str(exported_repository),
                                      "--url", triton_server.grpc_url, "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    assert row["version"] == 1 and row["serving"] == "ner,ner_int8" and row["source"] == "tests"


def test_models_list_of_an_empty_repository_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "list", "--repository", str(tmp_path)])
    assert result.exit_code == 1 and "no model versions" in result.output
