"""In-process extraction from an exported model repository: the very functions the Triton models run
(medner.inference), with ONNX Runtime, no server. ``medner extract --local REPOSITORY`` uses it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from medner.config import SERVED_MODELS
from medner.inference import Entity, NerPipeline, NoteError, TaggedNote, validate_note
from medner.registry import champion
from medner.triton_control import config_parameters


class LocalNerModel:
    """The CPU ``ner`` (or ``ner_int8``) model of a repository, run in this process: ``version`` (default:
    the champion, :func:`medner.registry.champion`) with its config's parameters, through the same
    :class:`NerPipeline` the Triton model runs, with ``threads`` ONNX Runtime threads (default: every core;
    the config's count is per Triton instance)."""

    def __init__(self, repository: Path, model: str = "ner", threads: int | None = None, version: int | None = None):
        if model not in SERVED_MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {', '.join(SERVED_MODELS)}")
        version = version if version is not None else champion(repository)
        version_dir = repository / model / str(version)
        if version is None or not version_dir.is_dir():
            raise FileNotFoundError(f"{repository / model} has no version {version or ''}: run `medner export`")
        parameters = config_parameters(repository / model / "config.pbtxt")
        self.pipeline = NerPipeline(version_dir, parameters, threads or os.cpu_count())
        self.max_note_chars = self.pipeline.max_note_chars

    def extract(self, notes: Sequence[str | bytes], return_exceptions: bool = False, with_uncertainty: bool = False
                ) -> list[list[Entity] | TaggedNote | NoteError]:
        """Entities of each note (``with_uncertainty``: its :class:`~medner.inference.TaggedNote`); invalid notes
        raise NoteError (or yield it with ``return_exceptions``)."""
        results: list[list[Entity] | TaggedNote | NoteError] = []
        valid: list[tuple[int, str]] = []
        for index, note in enumerate(notes):
            try:
                valid.append((index, validate_note(note, self.max_note_chars)))
                results.append([])
            except NoteError as err:
                if not return_exceptions:
                    raise NoteError(f"note {index}: {err}") from None
                results.append(NoteError(f"note {index}: {err}"))
        for (index, _), note in zip(valid, self.pipeline.decoded([text for _, text in valid])[1]):
            results[index] = TaggedNote(note.entities, note.uncertainty) if with_uncertainty else note.entities
        return results
