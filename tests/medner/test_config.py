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


def test_grpc_tls_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (config.GRPC_CA_ENV, config.GRPC_CERT_ENV, config.GRPC_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    assert config.grpc_tls() == {}  # plain gRPC
    monkeypatch.setenv(config.GRPC_CERT_ENV, "client.pem")
    monkeypatch.setenv(config.GRPC_KEY_ENV, "client.key")
    with pytest.raises(ValueError, match=config.GRPC_CA_ENV):  # a client identity is for TLS
        config.grpc_tls()
    monkeypatch.setenv(config.GRPC_CA_ENV, "ca.pem")
    assert config.grpc_tls() == {"ssl": True, "root_certificates": "ca.pem", "certificate_chain": "client.pem",
                                 "private_key": "client.key"}
    monkeypatch.delenv(config.GRPC_CERT_ENV)
    with pytest.raises(ValueError, match=config.GRPC_CERT_ENV):  # half an identity
        config.grpc_tls()
    monkeypatch.delenv(config.GRPC_KEY_ENV)
    assert config.grpc_tls() == {"ssl": True, "root_certificates": "ca.pem"}  # the server checked, no identity
