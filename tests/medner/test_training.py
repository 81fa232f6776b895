"""Training and prediction on a tiny synthetic corpus with the offline MiniLM weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medner.config import TrainConfig
from medner.data import read_behealthy, split_dev
from medner.decoding import SpanEdges
from medner.labels import IGNORE_INDEX
from medner.model_io import files_to_dir, load_model, model_to_files
from medner.training import average_state_dicts, evaluate_model, first_piece_targets, parameter_groups, predict, train


def test_first_piece_targets() -> None:
    word_ids = [None, 0, 0, 1, 2, 2, None]
    assert first_piece_targets(word_ids, ["B-D", "I-D", "O"]) == [
        IGNORE_INDEX, 1, IGNORE_INDEX, 2, 0, IGNORE_INDEX, IGNORE_INDEX]


def test_parameter_groups_give_the_head_its_rate_and_lower_layers_less() -> None:
    from transformers import BertConfig, BertForTokenClassification

    model = BertForTokenClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2,
                                                  num_attention_heads=2, intermediate_size=8, num_labels=5))
    config = TrainConfig(learning_rate=1e-4, head_learning_rate=1e-3, layer_decay=0.5, weight_decay=0.01)
    rate_of = {id(p): (g["lr"], g["weight_decay"]) for g in parameter_groups(model, config) for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(rate_of) == len(named)
    assert rate_of[id(named["classifier.weight"])] == (1e-3, 0.01)
    assert rate_of[id(named["classifier.bias"])] == (1e-3, 0.0)
    assert rate_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == (1e-4, 0.01)
    assert rate_of[id(named["bert.encoder.layer.0.output.dense.weight"])] == (5e-5, 0.01)
    assert rate_of[id(named["bert.embeddings.word_embeddings.weight"])] == (2.5e-5, 0.01)
    assert rate_of[id(named["bert.embeddings.LayerNorm.weight"])] == (2.5e-5, 0.0)
    flat = {g["lr"] for g in parameter_groups(model, TrainConfig(learning_rate=1e-4, layer_decay=1.0))}
    assert flat == {1e-4}


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

    files = model_to_files(result.model, result.tokenizer, result.span_edges)
    folder = files_to_dir(files, tiny_corpus.parent / "model")
    restored_tokenizer, restored = load_model(folder)
    assert result.span_edges.never_last and SpanEdges.load(folder) == result.span_edges  # "with" never ends one
    sentences = [s.tokens for s in splits["test"]]
    assert (predict(restored, restored_tokenizer, sentences, edges=SpanEdges.load(folder))
            == predict(result.model, result.tokenizer, sentences, edges=result.span_edges))


def test_averaged_weights_are_the_elementwise_mean_in_the_original_dtype() -> None:
    states = [{"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor([3])},
              {"w": torch.tensor([3.0, 6.0]), "steps": torch.tensor([6])}]
    mean = average_state_dicts(states)
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0]))
    assert mean["steps"].dtype == torch.int64 and int(mean["steps"]) == 4  # 4.5 truncated, as the dtype demands


@pytest.mark.slow
def test_averaging_keeps_the_last_epoch_as_the_chosen_one(tiny_corpus: Path) -> None:
    splits = read_behealthy(tiny_corpus)
    train_set, dev_set = split_dev(splits["train"], 0.2)
    config = TrainConfig(learning_rate=3e-4, epochs=2, batch_size=8, threads=1, max_train_sentences=32,
                         average_epochs=2)
    result = train(config, train_set, dev_set, progress=False)
    assert result.best_epoch == 2 and len(result.history) == 2
    assert result.dev_metrics == evaluate_model(result.model, result.tokenizer, dev_set, edges=result.span_edges)[0]


@pytest.mark.slow
def test_training_on_train_and_dev_keeps_the_last_epoch(tiny_corpus: Path) -> None:
    splits = read_behealthy(tiny_corpus)
    train_set, dev_set = split_dev(splits["train"], 0.2)
    config = TrainConfig(learning_rate=3e-4, epochs=2, batch_size=8, threads=1, train_on_dev=True, patience=1)
    result = train(config, train_set, dev_set, progress=False)
    assert [row["train_sentences"] for row in result.history] == [len(train_set) + len(dev_set)] * 2
    assert all(row["dev_entity_f1"] != row["dev_entity_f1"] for row in result.history)  # NaN: nothing held out
    assert result.best_epoch == 2 and result.dev_metrics["entity_f1"] > 0.5  # seen data, the last epoch kept
