"""A trained tagger on disk and as a Metaflow artifact: the Hugging Face folder (model, tokenizer) with the span
edges it is decoded with, what export loads and flows store."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from medner.decoding import SPAN_EDGES_FILE, SpanEdges


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
    """Load a model saved by :func:`save_model`."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModelForTokenClassification.from_pretrained(path).to(device)


def model_to_files(model: Any, tokenizer: Any, edges: SpanEdges | None = None) -> dict[str, bytes]:
    """The saved model folder (:func:`save_model`) as ``{relative path: bytes}``, to store as a Metaflow artifact
    (works unchanged with the local and the S3 datastore)."""
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tokenizer, tmp, edges)
        return {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


def files_to_dir(files: dict[str, bytes], path: Path | str) -> Path:
    """Write a model stored by :func:`model_to_files` into ``path`` (then :func:`load_model` it)."""
    path = Path(path)
    for name, payload in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(payload)
    return path
