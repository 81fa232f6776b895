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


def test_usage_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("asthma\n")
    cases = {
        "missing file": ["extract", "--local", str(tmp_path), str(tmp_path / "missing.txt")],
        "missing repository": ["extract", "--local", str(tmp_path / "no-repository"), str(tmp_path / "notes.txt")],
        "unknown format": ["extract", str(tmp_path / "notes.txt"), "--format", "xml"],
        "unknown model": ["extract", str(tmp_path / "notes.txt"), "--model", "bert"],
        "unknown monitored model": ["monitor", "check", "--profile-dir", str(tmp_path), "--model", "bert"],
        "not JSON": ["monitor", "act", str(tmp_path / "notes.txt"), "--train-params", "{"],
    }
    for case, args in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (case, result.output)
        assert "Traceback" not in result.output and result.exception is None or isinstance(
            result.exception, SystemExit), (case, result.exception)
    missing = runner.invoke(app, cases["missing file"])
    assert "missing.txt" in missing.stderr and "does not exist" in missing.stderr
    assert "'xml' is not one of 'jsonl', 'table'" in runner.invoke(app, cases["unknown format"]).stderr


def test_version() -> None:
    from medner import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"medner {__version__}\n"


def test_monitor_metrics_serves_the_decision_log_until_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    from medner.triton import free_ports

    log = tmp_path / "decisions.jsonl"
    log.write_text(json.dumps({"level": "warning", "scores": {"oov_word_rate": 0.2, "combined": 0.2}}) + "\n")
    [port] = free_ports(1)
    process = subprocess.Popen([sys.executable, "-m", "medner.cli", "monitor", "metrics", "--log", str(log),
                                "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert f"metrics on http://127.0.0.1:{port}/metrics" in process.stdout.readline()  # listening from here on
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert "medner_drift_level 1.0" in response.read().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait() == 0  # a hang fails through the suite's per-test timeout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
