"""DataFlow's work on a read corpus: versions, leakage, statistics, extra annotations in train."""

from __future__ import annotations

import json
from pathlib import Path

from medner.data import Sentence
from medner.prepare import corpus_stats, dataset_version, leakage, prepare_data


def test_version_is_a_content_hash() -> None:
    a = {"train": [Sentence(("x",), ("O",))], "test": [Sentence(("y",), ("D",))]}
    same = {"test": [Sentence(("y",), ("D",))], "train": [Sentence(("x",), ("O",))]}
    relabelled = {"train": [Sentence(("x",), ("T",))], "test": [Sentence(("y",), ("D",))]}
    assert dataset_version(a) == dataset_version(same)
    assert dataset_version(a) != dataset_version(relabelled)


def test_leakage_and_stats() -> None:
    train = [Sentence(("a", "b"), ("D", "D")), Sentence(("c",), ("T",))]
    test = [Sentence(("a", "b"), ("O", "O")), Sentence(("d",), ("O",))]
    assert leakage(train, test) == 1
    stats = corpus_stats(train)
    assert stats["sentences"] == 2 and stats["tokens"] == 3
    assert stats["entities"] == {"D": 1, "T": 1}
    assert stats["entity_lengths"] == {"D": {2: 1}, "T": {1: 1}}


def test_prepare_data_adds_extra_annotations_to_train(tiny_corpus: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"text": "Aspirin for gout", "entities": [{"start": 12, "end": 16, "label": "D"}]}))
    base = prepare_data(tiny_corpus)
    more = prepare_data(tiny_corpus, [extra])
    assert len(base.train) + len(base.dev) == 60 and len(base.test) == 20
    assert len(more.train) + len(more.dev) == 61
    assert more.version != base.version
    assert base.stats["dev"]["sentences"] == len(base.dev) == 6
    assert base.extra_sentences == {"total": 0, "train": 0, "dev": 0}
    added = next(s for s in more.train + more.dev if s.tokens == ("Aspirin", "for", "gout"))
    where = "train" if any(s is added for s in more.train) else "dev"
    assert more.extra_sentences == {"total": 1, "train": where == "train", "dev": where == "dev"}
    assert more.test == base.test
