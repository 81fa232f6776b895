"""A seed ensemble as one tagger: its folder reads like any tagger's, its logits are the log of the members' mean
probabilities, and export makes it one ONNX graph that answers as the PyTorch ensemble does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export.onnx_export import export_onnx
from medner.inference import WordPieceTokenizer, ort_encoder, torch_encoder
from medner.model_io import load_model, save_model, write_ensemble


@pytest.fixture
def members(untrained_model_dir: Path, tmp_path: Path) -> list[Path]:
    """Two taggers of one base that disagree: the untrained head, and the same head made confident the other way."""
    folders = []
    for name, scale in (("a", 1.0), ("b", -20.0)):
        tokenizer, model = load_model(untrained_model_dir)
        with torch.no_grad():
            model.classifier.weight *= scale
        folders.append(save_model(model, tokenizer, tmp_path / name))
    return folders


def test_an_ensemble_tags_with_its_members_mean_probabilities(members: list[Path], tmp_path: Path) -> None:
    folder = write_ensemble(members, tmp_path / "ensemble", sources=["TrainFlow/1", "TrainFlow/2"])
    assert json.loads((folder / "ensemble.json").read_text())["sources"] == ["TrainFlow/1", "TrainFlow/2"]
    tokenizer, ensemble = load_model(folder)  # the folder reads like any tagger's
    assert tokenizer.get_vocab() == load_model(members[0])[0].get_vocab()
    ids = torch.tensor([tokenizer("Asthma was treated with inhaled steroids .")["input_ids"]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        each = [load_model(m)[1](input_ids=ids, attention_mask=mask).logits.softmax(-1) for m in members]
        mean = ensemble(input_ids=ids, attention_mask=mask).logits.softmax(-1)
    assert not torch.equal(each[0].argmax(-1), each[1].argmax(-1))  # the members disagree somewhere
    torch.testing.assert_close(mean, (each[0] + each[1]) / 2, atol=1e-5, rtol=1e-4)


def test_an_ensemble_exports_to_one_graph_that_answers_as_it_does(members: list[Path], tmp_path: Path) -> None:
    folder = write_ensemble(members, tmp_path / "ensemble")
    onnx = export_onnx(folder, tmp_path / "ensemble.onnx")
    tokenizer = WordPieceTokenizer.from_dir(folder)
    ids = np.asarray([tokenizer.backend.encode("Asthma was treated with inhaled steroids .").ids], dtype=np.int64)
    mask = np.ones_like(ids)
    exported = ort_encoder(onnx)(ids, mask)
    reference = torch_encoder(load_model(folder)[1])(ids, mask)
    np.testing.assert_allclose(exported, reference, atol=1e-4)


def test_an_ensemble_needs_two_members_of_one_base(members: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two members or more"):
        write_ensemble(members[:1], tmp_path / "one")
    other = tmp_path / "other"
    shutil.copytree(members[1], other)
    (other / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(ValueError, match="different tokenizers"):
        write_ensemble([members[0], other], tmp_path / "mixed")
