"""Settings have one home (medner.config) and are read when used, not when a module is imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from medner import config
from medner.cli._app import Model


def test_environment_settings_are_read_when_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(config.DECISION_LOG_ENV, raising=False)
    monkeypatch.delenv(config.PROFILE_DIR_ENV, raising=False)
    assert config.decision_log() == config.DEFAULT_DECISION_LOG and config.profile_dir() == ""
    monkeypatch.setenv(config.DECISION_LOG_ENV, str(tmp_path / "log.jsonl"))
    monkeypatch.setenv(config.PROFILE_DIR_ENV, "s3://bucket/profiles")
    assert config.decision_log() == str(tmp_path / "log.jsonl") and config.profile_dir() == "s3://bucket/profiles"
    assert config.decision_log("explicit.jsonl") == "explicit.jsonl" and config.profile_dir("here") == "here"


def test_the_served_models_are_the_cli_s_choices() -> None:
    assert tuple(m.value for m in Model) == config.SERVED_MODELS
