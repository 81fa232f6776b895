"""Training and prediction on a tiny synthetic corpus with the offline MiniLM weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from medner.config import TrainConfig
from medner.data import read_behealthy, split_dev
from medner.training import (
    IGNORE_INDEX,
    files_to_dir,
    first_piece_targets,
    load_model,
    model_to_files,
    predict,
    train,
)


def test_first_piece_targets() -> None:
    word_ids = [None, 0, 0, 1, 2, 2, None]
    assert first_piece_targets(word_ids, ["B-D", "I-D", "O"]) == [
        IGNORE_INDEX, 1, IGNORE_INDEX, 2, 0, IGNORE_INDEX, IGNORE_INDEX]


@pytest.mark.slow
def test_tiny_training_learns_and_round_trips(tiny_corpus: Path) -> None:
    splits = read_behealthy(tiny_corpus)
    train_set, dev_set = split_dev(splits["train"], 0.2)
    config = TrainConfig(learning_rate=3e-4, epochs=3, batch_size=8, threads=1, patience=3)
    result = train(config, train_set, dev_set, progress=False)
    assert len(result.history) == 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_epoch == max(result.history, key=lambda r: r["dev_entity_f1"])["epoch"]
    assert result.dev_metrics["entity_f1"] > 0.5  # the synthetic templates are easy

    restored_tokenizer, restored = load_model(files_to_dir(model_to_files(result.model, result.tokenizer),
                                                           tiny_corpus.parent / "model"))
    sentences = [s.tokens for s in splits["test"]]
    assert predict(restored, restored_tokenizer, sentences) == predict(result.model, result.tokenizer, sentences)
