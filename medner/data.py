"""Reading, validating and splitting annotated data (:mod:`medner.prepare` versions it for DataFlow).

Two formats:

* **BeHealthy**: parallel ``<split>_sent`` / ``<split>_label`` files, one token (label) per line,
  a blank line between sentences, labels ``O``/``D``/``T``.
* **JSONL** for new annotations: one ``{"text": ..., "entities": [{"start", "end", "label"}]}``
  per line, character offsets into ``text`` (end exclusive).

Every reader validates the whole file before returning anything: a malformed file raises one
:class:`DataFormatError` naming the file and line, and nothing is half-loaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medner.labels import ENTITY_TYPES, FILE_LABELS
from medner.spans import Span, char_spans_to_token_spans, labels_to_spans, spans_to_labels, split_words

SPLITS = ("train", "test")


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file and line."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path, self.line = Path(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Sentence:
    """One annotated sentence: parallel tokens and O/D/T labels."""

    tokens: tuple[str, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.labels):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.labels)} labels")

    @property
    def spans(self) -> list[Span]:
        return labels_to_spans(self.labels)


# --- BeHealthy -------------------------------------------------------------------------------

def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: run `medner data fetch`, or point --data-dir / MEDNER_DATA_DIR "
            "at a folder holding train_sent, train_label, test_sent, test_label"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"bytes that are not UTF-8 ({err.reason})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [line.rstrip("\r") for line in lines]


def _read_column(path: Path, allowed: Sequence[str] | None) -> list[tuple[int, list[str]]]:
    """Sentences of one column file as ``(first line number, items)``."""
    sentences: list[tuple[int, list[str]]] = []
    current: list[str] = []
    first_line = 0
    for number, line in enumerate(_read_lines(path), start=1):
        if line == "":
            if current:
                sentences.append((first_line, current))
                current = []
            continue
        item = line.strip()
        if not item:
            raise DataFormatError(path, number, "empty token (a line of whitespace only)")
        if any(ch.isspace() for ch in item):
            raise DataFormatError(path, number, f"whitespace inside a token ({len(item)} chars)")
        if allowed is not None and item not in allowed:
            raise DataFormatError(
                path, number, f"unknown label {item!r}; expected one of {', '.join(allowed)}"
            )
        if not current:
            first_line = number
        current.append(item)
    if current:
        sentences.append((first_line, current))
    if not sentences:
        raise DataFormatError(path, None, "no sentences")
    return sentences


def read_behealthy_pair(sent_path: Path | str, label_path: Path | str) -> list[Sentence]:
    """Read one parallel pair of token / label files, validating both."""
    sent_path, label_path = Path(sent_path), Path(label_path)
    token_column = _read_column(sent_path, allowed=None)
    label_column = _read_column(label_path, allowed=FILE_LABELS)
    for (t_line, tokens), (l_line, labels) in zip(token_column, label_column):
        if len(tokens) != len(labels) or t_line != l_line:
            raise DataFormatError(
                sent_path,
                t_line,
                f"sentence has {len(tokens)} tokens but the sentence at {label_path}:{l_line} "
                f"has {len(labels)} labels",
            )
    if len(token_column) != len(label_column):
        longer, column = (
            (sent_path, token_column)
            if len(token_column) > len(label_column)
            else (label_path, label_column)
        )
        extra_line = column[min(len(token_column), len(label_column))][0]
        raise DataFormatError(
            longer,
            extra_line,
            f"{sent_path.name} has {len(token_column)} sentences but {label_path.name} has "
            f"{len(label_column)}; the first unmatched sentence starts here",
        )
    return [Sentence(tuple(t), tuple(lab)) for (_, t), (_, lab) in zip(token_column, label_column)]


def read_behealthy(data_dir: Path | str) -> dict[str, list[Sentence]]:
    """Read the ``train`` and ``test`` splits of a BeHealthy folder."""
    data_dir = Path(data_dir)
    return {
        split: read_behealthy_pair(data_dir / f"{split}_sent", data_dir / f"{split}_label")
        for split in SPLITS
    }


def write_behealthy(sentences: Iterable[Sentence], data_dir: Path | str, split: str) -> None:
    """Write sentences as a BeHealthy ``<split>_sent`` / ``<split>_label`` pair."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    sentences = list(sentences)
    for suffix, column in (("sent", "tokens"), ("label", "labels")):
        blocks = ["\n".join(getattr(s, column)) for s in sentences]
        (data_dir / f"{split}_{suffix}").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


# --- JSONL -----------------------------------------------------------------------------------

def parse_annotation(record: object) -> Sentence:
    """One JSONL record (``{"text", "entities"}``) as a sentence; ``ValueError`` says what is wrong (never the text)."""
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise ValueError('expected an object with a string "text"')
    text = record["text"]
    entities = record.get("entities", [])
    if not isinstance(entities, list):
        raise ValueError('"entities" must be a list')
    spans = []
    for k, entity in enumerate(entities):
        if not isinstance(entity, dict):
            raise ValueError(f"entity {k} is not an object")
        start, end, label = entity.get("start"), entity.get("end"), entity.get("label")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            raise ValueError(f"entity {k} needs integer 0 <= start < end <= {len(text)}")
        if label not in ENTITY_TYPES:
            raise ValueError(f"entity {k} has label {label!r}; expected one of {ENTITY_TYPES}")
        spans.append(Span(start, end, label))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise ValueError(f"entities [{a.start}, {a.end}) and [{b.start}, {b.end}) overlap")
    offsets = split_words(text)
    if not offsets:
        raise ValueError("text has no words")
    token_spans = char_spans_to_token_spans(spans, offsets)
    tokens = tuple(text[s:e] for s, e in offsets)
    return Sentence(tokens, tuple(spans_to_labels(token_spans, len(tokens))))


def read_jsonl(path: Path | str) -> list[Sentence]:
    """Read annotations in the JSONL format; blank lines are skipped."""
    path = Path(path)
    sentences = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            sentences.append(parse_annotation(json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataFormatError(path, number, f"invalid JSON ({err.msg})") from None
        except ValueError as err:
            raise DataFormatError(path, number, str(err)) from None
    if not sentences:
        raise DataFormatError(path, None, "no records")
    return sentences


def read_annotations(path: Path | str) -> list[Sentence]:
    """Read a ``.jsonl`` file, or a ``<stem>_sent`` file with its ``<stem>_label`` partner."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.name.endswith("_sent"):
        return read_behealthy_pair(path, path.with_name(path.name[: -len("_sent")] + "_label"))
    raise DataFormatError(path, None, "unknown format: expected *.jsonl or a *_sent/*_label pair")


# --- splits, versions, statistics ------------------------------------------------------------

def split_dev(
    sentences: Sequence[Sentence], fraction: float = 0.1, seed: int = 13
) -> tuple[list[Sentence], list[Sentence]]:
    """Carve a dev split from ``sentences`` with a fixed seed; returns ``(train, dev)``."""
    if not 0 < fraction < 1:
        raise ValueError(f"dev fraction must be in (0, 1), got {fraction}")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(sentences) * fraction))
    dev_ids = set(order[:n_dev])
    train = [s for i, s in enumerate(sentences) if i not in dev_ids]
    dev = [s for i, s in enumerate(sentences) if i in dev_ids]
    return train, dev
