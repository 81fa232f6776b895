import json
from pathlib import Path

from typer.testing import CliRunner

from medner.cli import app

runner = CliRunner()


def test_data_check_prints_statistics(tiny_corpus: Path) -> None:
    result = runner.invoke(app, ["data", "check", "--data-dir", str(tiny_corpus)])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["train"]["sentences"] == 60 and stats["test"]["sentences"] == 20


def test_data_check_reports_the_bad_line(tmp_path: Path) -> None:
    (tmp_path / "new_sent").write_text("a\nb\n")
    (tmp_path / "new_label").write_text("O\nQ\n")
    result = runner.invoke(app, ["data", "check", str(tmp_path / "new_sent")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'new_label'}:2: unknown label 'Q'" in result.stderr


def test_fetch_failure_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "fetch", "--data-dir", str(tmp_path), "--mirror", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "could not download" in result.stderr
