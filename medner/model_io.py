"""A trained tagger on disk and as a Metaflow artifact: the Hugging Face folder (model, tokenizer) with the span
edges it is decoded with, what export loads and flows store."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medner.decoding import SPAN_EDGES_FILE, SpanEdges, mean_learned


def pick_device() -> str:
    """``cuda`` where torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def save_model(model: Any, tokenizer: Any, path: Path | str, edges: SpanEdges | None = None) -> Path:
    """Save model and tokenizer in Hugging Face format (what export loads), and the span edges the model is
    decoded with (``SpanEdges.load(path)`` reads them back)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if edges is not None:
        (path / SPAN_EDGES_FILE).write_text(edges.to_json())
    return path


def load_model(path: Path | str, device: str = "cpu") -> tuple[Any, Any]:
    """Load a model saved by :func:`save_model`, or a seed ensemble's folder (:func:`write_ensemble`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path), load_tagger(path, device)


def model_to_files(model: Any, tokenizer: Any, edges: SpanEdges | None = None) -> dict[str, bytes]:
    """The saved model folder (:func:`save_model`) as ``{relative path: bytes}``, to store as a Metaflow artifact
    (works unchanged with the local and the S3 datastore)."""
    with tempfile.TemporaryDirectory() as tmp:
        return folder_to_files(save_model(model, tokenizer, tmp, edges))


def model_names(source: str) -> list[str]:
    """The models (runs or folders) ``source`` names: one, or several separated by commas (a seed ensemble)."""
    return [name.strip() for name in str(source).split(",") if name.strip()]


def folder_to_files(folder: Path | str) -> dict[str, bytes]:
    """A model folder (one tagger or a seed ensemble) as ``{relative path: bytes}`` (:func:`files_to_dir` writes
    it back)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def link_or_copy(source: Path | str, target: Path | str) -> None:
    """A hard link (no second copy of a large file on disk) or, across file systems, a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def files_to_dir(files: dict[str, bytes], path: Path | str) -> Path:
    """Write a model stored by :func:`model_to_files` into ``path`` (then :func:`load_model` it)."""
    path = Path(path)
    for name, payload in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(payload)
    return path


# --- a seed ensemble ------------------------------------------------------------------------------------------
# Models of one recipe trained with different seeds (one tokenizer, one tag set), whose mean tag probabilities tag a
# word (what it gave: benchmarks/results/accuracy.md, the ensemble rows; its cost: benchmarks/results/frontier.md).
# On disk, a folder like a saved tagger: its first member's tokenizer and span edges at the top, so every reader of
# a tagger folder reads it, and ENSEMBLE_FILE naming the member folders under members/. Loaded, one PyTorch module
# whose logits are the log of the members' mean probabilities (softmax of them is that mean): export makes it one
# ONNX graph, served like any other version, every member's encoder pass inside one request.

ENSEMBLE_FILE = "ensemble.json"
_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")  # a member's weights, not the tokenizer's


def is_ensemble(folder: Path | str) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def write_ensemble(members: Sequence[Path | str], folder: Path | str, sources: Sequence[str] = ()) -> Path:
    """The tagger folders ``members`` as one ensemble folder (hard links where the file system allows). Raises
    ValueError unless there are two members or more with one tokenizer and one tag set."""
    members = [Path(m) for m in members]
    if len(members) < 2:
        raise ValueError(f"an ensemble needs two members or more, got {len(members)}")
    configs = [json.loads((m / "config.json").read_text()) for m in members]
    if len({json.dumps(c.get("id2label"), sort_keys=True) for c in configs}) > 1:
        raise ValueError("the members tag different tag sets")
    vocabularies = {(m / "vocab.txt").read_bytes() if (m / "vocab.txt").exists() else b"" for m in members}
    if len(vocabularies) > 1:
        raise ValueError("the members have different tokenizers: a seed ensemble shares its base model")
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    for index, member in enumerate(members):
        shutil.copytree(member, folder / "members" / str(index), copy_function=link_or_copy)
    for item in members[0].iterdir():  # the tokenizer (and span edges) at the top, as in any tagger folder
        if item.is_file() and item.name not in _MODEL_FILES:
            link_or_copy(item, folder / item.name)
    _mean_learned_scores(members, folder)
    names = [f"members/{i}" for i in range(len(members))]
    (folder / ENSEMBLE_FILE).write_text(json.dumps({"members": names, "sources": list(sources)}, indent=1) + "\n")
    return folder


def _mean_learned_scores(members: Sequence[Path], folder: Path) -> None:
    """Members trained with a CRF layer: the ensemble's span edges carry the mean of their learned scores (they
    decode the members' mean probabilities); the span edges' words are the first member's (one train split)."""
    edges = [SpanEdges.load(m) for m in members]
    learned = mean_learned(edges)
    if learned is None:
        return
    (folder / SPAN_EDGES_FILE).unlink(missing_ok=True)  # a link to the first member's: not written through
    (folder / SPAN_EDGES_FILE).write_text(edges[0].with_learned(*learned).to_json())


def ensemble_of_files(members: Sequence[dict[str, bytes]], sources: Sequence[str] = ()) -> dict[str, bytes]:
    """Taggers stored as files (:func:`model_to_files`) as one seed ensemble's files."""
    with tempfile.TemporaryDirectory() as tmp:
        folders = [files_to_dir(files, Path(tmp) / f"member-{i}") for i, files in enumerate(members)]
        return folder_to_files(write_ensemble(folders, Path(tmp) / "ensemble", sources))


def ensemble_members(folder: Path | str) -> list[Path]:
    """The member folders of an ensemble folder."""
    return [Path(folder) / name for name in json.loads((Path(folder) / ENSEMBLE_FILE).read_text())["members"]]


def load_tagger(folder: Path | str, device: str = "cpu") -> Any:
    """The PyTorch token classifier saved in ``folder``: a Hugging Face model, or an ensemble's
    :func:`mean_probabilities` module."""
    from transformers import AutoModelForTokenClassification

    if not is_ensemble(folder):
        return AutoModelForTokenClassification.from_pretrained(folder).to(device)
    return mean_probabilities([AutoModelForTokenClassification.from_pretrained(m).to(device)
                               for m in ensemble_members(folder)])


def mean_probabilities(members: Sequence[Any]) -> Any:
    """One module over token classifiers: ``module(input_ids=, attention_mask=).logits`` is the log of their mean
    tag probabilities; ``config`` is the first member's."""
    from types import SimpleNamespace

    import torch

    class MeanProbabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(members)
            self.config = members[0].config

        def forward(self, input_ids: Any = None, attention_mask: Any = None, **_: Any) -> Any:
            probabilities = torch.stack([member(input_ids=input_ids, attention_mask=attention_mask).logits.float()
                                         .softmax(-1) for member in self.members]).mean(0)
            return SimpleNamespace(logits=probabilities.clamp_min(1e-12).log())

    return MeanProbabilities()
