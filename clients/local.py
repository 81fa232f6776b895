"""In-process extraction from an exported model repository: the very functions the Triton models run
(medner.inference), with ONNX Runtime, no server. ``medner extract --local REPOSITORY`` uses it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from medner.inference import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_NOTE_CHARS,
    DEFAULT_MICRO_BATCH,
    DEFAULT_STRIDE,
    Entity,
    NoteError,
    extract,
    ort_encoder,
    validate_note,
)

ENCODERS = {"ner": "ner_encoder", "ner_int8": "ner_encoder_int8"}


def config_parameters(config: Path) -> dict[str, str]:
    """The ``parameters`` of a Triton ``config.pbtxt`` (string values)."""
    pattern = r'parameters\s*\{\s*key:\s*"([^"]+)"\s*value:\s*\{\s*string_value:\s*"([^"]*)"\s*\}\s*\}'
    return dict(re.findall(pattern, config.read_text()))


def latest_version(model_dir: Path) -> Path:
    versions = sorted((p for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise FileNotFoundError(f"{model_dir} has no version: run `medner export` first")
    return versions[-1]


class LocalNerModel:
    """The ``ner`` (or ``ner_int8``) ensemble of a repository, run in this process."""

    def __init__(self, repository: Path, model: str = "ner", threads: int = 1):
        from transformers import AutoTokenizer

        if model not in ENCODERS:
            raise ValueError(f"unknown model {model!r}; expected one of {', '.join(ENCODERS)}")
        tokenize = config_parameters(repository / "ner_tokenize" / "config.pbtxt")
        encoder = config_parameters(repository / ENCODERS[model] / "config.pbtxt")
        self.max_length = int(tokenize.get("max_length", DEFAULT_MAX_LENGTH))
        self.stride = int(tokenize.get("stride", DEFAULT_STRIDE))
        self.max_note_chars = int(tokenize.get("max_note_chars", DEFAULT_MAX_NOTE_CHARS))
        self.micro_batch = int(encoder.get("micro_batch", DEFAULT_MICRO_BATCH))
        self.method = config_parameters(repository / "ner_decode" / "config.pbtxt").get("decode", "viterbi")
        self.tokenizer = AutoTokenizer.from_pretrained(latest_version(repository / "ner_tokenize"))
        encoder_dir = latest_version(repository / ENCODERS[model])
        self.encode = ort_encoder(encoder_dir / encoder.get("model_file", "model.onnx"), threads)

    def extract(self, notes: Sequence[str | bytes], return_exceptions: bool = False) -> list[list[Entity] | NoteError]:
        """Entities of each note; invalid notes raise NoteError (or yield it with ``return_exceptions``)."""
        results: list[list[Entity] | NoteError] = []
        valid: list[tuple[int, str]] = []
        for index, note in enumerate(notes):
            try:
                valid.append((index, validate_note(note, self.max_note_chars)))
                results.append([])
            except NoteError as err:
                if not return_exceptions:
                    raise NoteError(f"note {index}: {err}") from None
                results.append(NoteError(f"note {index}: {err}"))
        texts = [text for _, text in valid]
        for (index, _), entities in zip(valid, extract(texts, self.tokenizer, self.encode, self.max_length,
                                                      self.stride, self.micro_batch, self.method)):
            results[index] = entities
        return results
