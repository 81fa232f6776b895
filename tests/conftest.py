"""Shared fixtures: a tiny synthetic BeHealthy corpus, so tests need neither the real corpus nor
the network."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import settings

from medner.data import Sentence, write_behealthy

pytest_plugins = ["tests.crash_dumps", "tests.databases"]  # fixtures every folder shares

# No per-example time limit in property tests: on a shared 2-core machine a slow example is not a failure.
settings.register_profile("medner", deadline=None)
settings.load_profile("medner")

DISEASES = [["breast", "cancer"], ["asthma"], ["type", "2", "diabetes"], ["hypertension"], ["migraine"]]
TREATMENTS = [["tamoxifen"], ["inhaled", "steroids"], ["metformin"], ["beta", "blockers"], ["surgery"]]
TEMPLATES = [
    ["Patients", "with", "{D}", "were", "treated", "with", "{T}", "."],
    ["{T}", "reduced", "symptoms", "of", "{D}", "in", "this", "trial", "."],
    ["We", "studied", "{D}", "outcomes", "over", "five", "years", "."],
    ["The", "effect", "of", "{T}", "on", "{D}", "remains", "unclear", "."],
]


def synthetic_sentences(n: int, seed: int = 0) -> list[Sentence]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        tokens, labels = [], []
        for slot in rng.choice(TEMPLATES):
            if slot in ("{D}", "{T}"):
                words = rng.choice(DISEASES if slot == "{D}" else TREATMENTS)
                tokens += words
                labels += [slot[1]] * len(words)
            else:
                tokens.append(slot)
                labels.append("O")
        sentences.append(Sentence(tuple(tokens), tuple(labels)))
    return sentences


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BeHealthy folder with 60 train and 20 test synthetic sentences."""
    folder = tmp_path_factory.mktemp("behealthy")
    write_behealthy(synthetic_sentences(60, seed=1), folder, "train")
    write_behealthy(synthetic_sentences(20, seed=2), folder, "test")
    return folder


@pytest.fixture(scope="session")
def narrow_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base model folder (what ``--base-model`` takes) with the offline MiniLM's tokenizer and architecture,
    narrowed (two layers, 64 wide) and randomly initialised (seeded). The code paths are the default model's; its
    ONNX graphs are about an eighth of even two MiniLM layers' (the word embeddings dominate), which every test
    that trains, exports, uploads or serves a model moves and loads. What the default base model itself gives is
    measured by the benchmarks, not here."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from medner.config import default_base_model

    torch.manual_seed(0)
    base, folder = default_base_model(), tmp_path_factory.mktemp("narrow-base")
    config = AutoConfig.from_pretrained(base, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=128)
    AutoModel.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_training(narrow_base_model: Path) -> dict[str, int | str]:
    """TrainFlow's parameters (as flows and triggers take them) for a few steps of the narrow base model."""
    return {"epochs": 1, "batch-size": 8, "threads": 1, "max-steps": 4, "base-model": str(narrow_base_model)}


@pytest.fixture(scope="session")
def untrained_model_dir(narrow_base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The narrow base model with a fresh (seeded) classification head, saved as a model folder with the span
    edges of the tiny corpus's train split: arbitrary but deterministic predictions, enough to compare code
    paths."""
    import torch

    from medner.decoding import SpanEdges
    from medner.model_io import save_model
    from medner.training import load_tokenizer_and_model

    torch.manual_seed(0)
    tokenizer, model = load_tokenizer_and_model(str(narrow_base_model))
    edges = SpanEdges.learn((s.tokens, s.labels) for s in synthetic_sentences(60, seed=1))
    return save_model(model, tokenizer, tmp_path_factory.mktemp("untrained"), edges)


@pytest.fixture(scope="session")
def exported_repository(untrained_model_dir: Path, tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory
                        ) -> Path:
    """A Triton model repository with version 1 of the untrained model (its accuracy estimate calibrated on train
    sentences: the untrained model has seen none)."""
    from export.onnx_export import export_model
    from medner.data import read_behealthy

    repository = tmp_path_factory.mktemp("model_repository")
    splits = read_behealthy(tiny_corpus)
    export_model(untrained_model_dir, repository, test=splits["test"], lineage={"source": "tests"},
                 train=splits["train"], calibration=splits["train"][:30])
    return repository


@pytest.fixture(scope="session")
def triton_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real tritonserver on free 127.0.0.1 ports, serving the exported repository, profiling every note
    into ``server.profile_dir`` in 2-second windows (tests/monitoring/test_serving_profiles.py reads them)."""
    from medner.triton import TritonServer, free_ports

    grpc_port, http_port, metrics_port = free_ports(3)
    folder = tmp_path_factory.mktemp("triton")
    with TritonServer(exported_repository, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                      log_file=folder / "server.log", profile_dir=str(folder / "profiles"),
                      profile_window_seconds=2.0) as server:
        yield server


@pytest.fixture
def moto_endpoint():
    """A moto server (S3, Step Functions, ...) on a free 127.0.0.1 port, stopped after the test."""
    from tests.aws import moto_server

    with moto_server() as url:
        yield url
