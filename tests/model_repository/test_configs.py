"""Every Triton config in the template repository parses against Triton's own schema, and the GPU
ensembles wire existing inputs and outputs (tests/model_repository/test_gpu_ensemble.py serves them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from medner.labels import BIO_TAGS
from medner.triton_control import read_model_config

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
CONFIGS = sorted(REPOSITORY.glob("*/config.pbtxt")) + sorted(REPOSITORY.glob("*/configs/*.pbtxt"))


def gpu_config(model: str) -> model_config_pb2.ModelConfig:
    """The config Triton takes with --model-config-name=gpu: configs/gpu.pbtxt, else config.pbtxt."""
    custom = REPOSITORY / model / "configs" / "gpu.pbtxt"
    return read_model_config(custom if custom.exists() else REPOSITORY / model / "config.pbtxt")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPOSITORY)))
def test_config_parses_and_names_its_model(path: Path) -> None:
    model = path.parent.name if path.name == "config.pbtxt" else path.parent.parent.name
    assert read_model_config(path).name == model


@pytest.mark.parametrize("ensemble", ["ner", "ner_int8"])
def test_gpu_ensemble_steps_match_their_models(ensemble: str) -> None:
    config = gpu_config(ensemble)
    assert config.platform == "ensemble"
    produced = {i.name for i in config.input}
    for step in config.ensemble_scheduling.step:
        part = gpu_config(step.model_name)
        assert set(step.input_map) <= {i.name for i in part.input}, step.model_name
        assert set(step.output_map) <= {o.name for o in part.output}, step.model_name
        assert set(step.input_map.values()) <= produced, f"{step.model_name} reads a tensor no step made yet"
        produced |= set(step.output_map.values())
    assert {o.name for o in config.output} <= produced
    encoder = gpu_config(config.ensemble_scheduling.step[1].model_name)
    parameters = {key: value.string_value for key, value in encoder.parameters.items()}
    # the bundled server has the python backend only: the encoder is a python model with its session on the GPU
    assert encoder.backend == "python" and parameters["device"] == "gpu"
    assert encoder.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_MODEL
    # TensorRT FP16 for the fp32 graph; the INT8 graph on CUDA: TensorRT wants calibrated QDQ models
    assert parameters["fp16"] == ("true" if ensemble == "ner" else "false")


@pytest.mark.parametrize("model", ["ner_tokenize", "ner_decode", "ner_decode_int8"])
def test_gpu_cpu_stages_differ_from_cpu_config_only_in_instances(model: str) -> None:
    cpu, gpu = read_model_config(REPOSITORY / model / "config.pbtxt"), gpu_config(model)
    assert gpu.instance_group[0].count > cpu.instance_group[0].count  # the CPU stages bound GPU throughput
    del cpu.instance_group[:], gpu.instance_group[:]
    assert gpu == cpu


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPOSITORY)))
def test_tag_dimensions_are_the_tag_set_and_every_answer_carries_its_uncertainty(path: Path) -> None:
    """The encoder python model sizes its logits from the config, so the config must say the tag set's size."""
    config = read_model_config(path)
    for tensor in (*config.input, *config.output):
        if tensor.name == "logits":
            assert tensor.dims[-1] == len(BIO_TAGS), f"{tensor.name} of {config.name}"
    if any(o.name == "ENTITIES" for o in config.output):  # text out: the note's uncertainty beside it
        uncertainty = next(o for o in config.output if o.name == "UNCERTAINTY")
        assert uncertainty.data_type == model_config_pb2.TYPE_FP32 and list(uncertainty.dims) == [1]
