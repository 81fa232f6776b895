"""DataFlow's work on a corpus read by :mod:`medner.data`: the dev split carved from train, a content version,
test sentences leaked into train, and corpus statistics."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medner.config import data_dir as resolve_data_dir
from medner.data import Sentence, read_annotations, read_behealthy, split_dev
from medner.labels import ENTITY_TYPES


def dataset_version(splits: dict[str, Sequence[Sentence]]) -> str:
    """Content hash of the splits (names, tokens and labels): equal data, equal version."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(f"\x00split {name}\x00".encode())
        for sentence in splits[name]:
            digest.update("\x1f".join(sentence.tokens).encode())
            digest.update(b"\x1e")
            digest.update("".join(sentence.labels).encode())
            digest.update(b"\x1d")
    return digest.hexdigest()[:16]


def leakage(train: Sequence[Sentence], test: Sequence[Sentence]) -> int:
    """How many test sentences also appear, token for token, in train."""
    seen = {s.tokens for s in train}
    return sum(s.tokens in seen for s in test)


def corpus_stats(sentences: Sequence[Sentence]) -> dict:
    """Sentence, token and entity counts and the entity length histogram (in tokens)."""
    entities: Counter[str] = Counter()
    lengths: dict[str, Counter[int]] = {t: Counter() for t in ENTITY_TYPES}
    for sentence in sentences:
        for span in sentence.spans:
            entities[span.label] += 1
            lengths[span.label][span.end - span.start] += 1
    n_tokens = sum(len(s.tokens) for s in sentences)
    return {
        "sentences": len(sentences),
        "tokens": n_tokens,
        "mean_sentence_tokens": round(n_tokens / max(1, len(sentences)), 2),
        "max_sentence_tokens": max((len(s.tokens) for s in sentences), default=0),
        "entities": {t: entities[t] for t in ENTITY_TYPES},
        "entity_lengths": {t: dict(sorted(lengths[t].items())) for t in ENTITY_TYPES},
    }


@dataclass
class PreparedData:
    """Validated, split and versioned data: what DataFlow publishes and TrainFlow consumes."""

    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    version: str
    leaked_test_sentences: int
    stats: dict
    extra_sentences: dict[str, int]  # extra annotations (e.g. exported reviews): total, in train, in dev


def prepare_data(
    data_dir: Path | str,
    extra_annotations: Sequence[Path | str] = (),
    dev_fraction: float = 0.1,
    seed: int = 13,
) -> PreparedData:
    """Read and validate the corpus (plus extra annotations, added to train), carve the dev split
    from train with a fixed seed (test is untouched), version the result and count leakage; ``extra_sentences`` says
    how many extra sentences (e.g. exported reviews) went into train and dev."""
    corpus = read_behealthy(data_dir)
    extra = [s for path in extra_annotations for s in read_annotations(path)]
    train, dev = split_dev(corpus["train"] + extra, dev_fraction, seed)
    splits = {"train": train, "dev": dev, "test": corpus["test"]}
    extra_ids = {id(s) for s in extra}  # split_dev hands back the same objects
    return PreparedData(
        train=train,
        dev=dev,
        test=corpus["test"],
        version=dataset_version(splits),
        leaked_test_sentences=leakage(corpus["train"] + extra, corpus["test"]),
        stats={name: corpus_stats(sentences) for name, sentences in splits.items()},
        extra_sentences={"total": len(extra), "train": sum(id(s) in extra_ids for s in train),
                         "dev": sum(id(s) in extra_ids for s in dev)},
    )


def check_data(paths: Sequence[str | Path], data_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Statistics of each annotated file in ``paths`` (validated as read), else of the BeHealthy splits in
    ``data_dir`` (default: :func:`medner.config.data_dir`). Raises DataFormatError naming file and line."""
    splits = ({str(p): read_annotations(p) for p in paths} if paths
              else read_behealthy(resolve_data_dir(data_dir)))
    return {name: corpus_stats(sentences) for name, sentences in splits.items()}
