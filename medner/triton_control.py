"""Triton's model control, as medner uses it: model configs read as Triton parses them, the admin key that guards
the administrative endpoints, and loading one version of every model on a live server (explicit model control).
:mod:`medner.triton` starts and stops servers."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from medner.config import cache_dir, grpc_tls

ADMIN_HEADER = "medner-admin-key"  # the HTTP header that carries the admin key
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # the same as gRPC metadata (Triton adds the prefix)
ADMIN_KEY_ENV = "MEDNER_ADMIN_KEY"


def read_model_config(path: Path) -> Any:  # -> tritonclient's model_config_pb2.ModelConfig
    """A Triton ``config.pbtxt`` (protobuf text format, comments allowed) as Triton itself parses it."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())


def config_parameters(path: Path) -> dict[str, str]:
    """The ``parameters`` of a ``config.pbtxt`` (string values), as a python model sees them at load."""
    return {key: value.string_value for key, value in read_model_config(path).parameters.items()}


def admin_key(key_file: Path | None = None, create: bool = True) -> str | None:
    """The admin key: ``$MEDNER_ADMIN_KEY``, else the key file (default ``~/.cache/medner/admin-key``),
    created with a random key (mode 0600) when missing and ``create``; None when missing otherwise."""
    import secrets

    if os.environ.get(ADMIN_KEY_ENV):
        return os.environ[ADMIN_KEY_ENV]
    key_file = key_file or cache_dir() / "admin-key"
    if not key_file.exists():
        if not create:
            return None
        key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return key_file.read_text().strip()


def model_config_file(model_dir: Path, gpu: bool = False) -> Path:
    """The config Triton reads for a model: ``configs/gpu.pbtxt`` under ``--model-config-name=gpu`` where the
    model has one, else ``config.pbtxt``."""
    custom = model_dir / "configs" / "gpu.pbtxt"
    return custom if gpu and custom.exists() else model_dir / "config.pbtxt"


class VersionLoadError(RuntimeError):
    """A version did not load on a server; the message says whether the server went back to the one before."""


def serves_gpu_configs(url: str) -> bool:
    """Whether the server at ``url`` runs the GPU configs (``ner`` is then an ensemble: configs/gpu.pbtxt); False
    when it has no ``ner`` loaded (model configs are metadata: no admin key needed)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url, **grpc_tls())
    try:
        return client.get_model_config("ner", as_json=True)["config"].get("platform") == "ensemble"
    except InferenceServerException:
        return False
    finally:
        client.close()


class PartialLoadError(RuntimeError):
    """A model did not load a version (the cause is chained); ``moved``: the models that had moved to it before."""

    def __init__(self, message: str, moved: Sequence[str]):
        super().__init__(message)
        self.moved = list(moved)


def load_version(url: str, key: str, repository: Path, version: int, gpu: bool | None = None,
                 timeout: float = 300.0, models: Collection[str] | None = None) -> dict[str, int | None]:
    """Make every model of ``repository`` (or those in ``models``) serve ``version`` alone, on the server at
    ``url`` (explicit model control, admin key ``key``), with the GPU configs or the CPU ones (``gpu``; None: those
    the server runs now, :func:`serves_gpu_configs`). Each model is loaded with its config pinned to that version
    (``version_policy: specific``), and an ensemble's steps pinned to it too, so a GPU ensemble never pairs one
    version's tokenizer with another's encoder. Triton keeps serving the version it had until the new one is
    ready, and retires it once its in-flight requests finish, so clients see no gap. A model without that version
    (``ner_int8`` when the INT8 gate failed) is unloaded. Ensembles load after their parts. Returns
    model -> version now served (None: unloaded). Raises PartialLoadError when a load fails: the models before it
    have moved (its ``moved``); the one that failed still serves what it served (a failed reload leaves a loaded
    model as it was), and the rest have not moved (:func:`switch_version` puts back only those that moved)."""
    import tritonclient.grpc as grpcclient
    from google.protobuf import json_format

    gpu = serves_gpu_configs(url) if gpu is None else gpu
    configs = {}
    for config_file in sorted(repository.glob("*/config.pbtxt")):
        if models is None or config_file.parent.name in models:
            configs[config_file.parent.name] = read_model_config(model_config_file(config_file.parent, gpu))
    headers = {GRPC_ADMIN_HEADER: key}
    client = grpcclient.InferenceServerClient(url, **grpc_tls())
    served: dict[str, int | None] = {}
    try:
        for name in sorted(configs, key=lambda m: (configs[m].platform == "ensemble", m)):
            config = configs[name]
            try:
                if not (repository / name / str(version)).is_dir():
                    if client.is_model_ready(name):
                        client.unload_model(name, headers=headers, client_timeout=timeout)
                    served[name] = None
                    continue
                config.version_policy.specific.versions[:] = [version]
                for ensemble_step in config.ensemble_scheduling.step:
                    ensemble_step.model_version = version
                client.load_model(name, headers=headers, config=json_format.MessageToJson(config),
                                  client_timeout=timeout)
            except Exception as err:
                raise PartialLoadError(f"{name}: {_reason(err)}", moved=list(served)) from err
            served[name] = version
    finally:
        client.close()
    return served


def switch_version(url: str, key: str, repository: Path, version: int, previous: int | None,
                   gpu: bool | None = None, timeout: float = 300.0) -> dict[str, int | None]:
    """:func:`load_version` as one step: when any model fails to load ``version``, the models that had moved
    are put back on ``previous`` (so no mix of versions stays) and VersionLoadError says so."""
    gpu = serves_gpu_configs(url) if gpu is None else gpu
    try:
        return load_version(url, key, repository, version, gpu, timeout)
    except PartialLoadError as err:
        if previous is None:
            raise VersionLoadError(f"v{version} did not load ({err}); no version before it") from err
        try:
            load_version(url, key, repository, previous, gpu, timeout, models=err.moved)
        except Exception as back:
            raise VersionLoadError(f"v{version} did not load ({err}), and going back to v{previous} failed "
                                   f"too ({_reason(back)})") from err
        raise VersionLoadError(f"v{version} did not load ({err}); back on v{previous}") from err
    except Exception as err:  # before any model moved (the repository's configs, the server's answer)
        raise VersionLoadError(f"v{version} did not load ({_reason(err)}); nothing moved") from err


def _reason(err: Exception) -> str:
    """An error's first line, without the server's echo of a whole config."""
    return f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
