"""Distillation: the soft loss reads each word's own teacher row, a student learns its teacher's tags, and a
teacher must be a saved tagger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medner.config import TrainConfig
from medner.crf_layer import transition_layer
from medner.data import read_behealthy, split_dev
from medner.decoding import SpanEdges, marginals
from medner.distill import RULED_OUT, distillation_loss, teacher_log_probs
from medner.labels import BIO_TAGS, OUTSIDE
from medner.model_io import load_model, model_names, save_model, write_ensemble
from medner.training import predict, train


def test_distillation_loss_compares_each_word_s_first_piece_with_its_own_teacher_row() -> None:
    logits = torch.randn(2, 6, 5)
    # row 0: word 0 has two pieces, word 1 none (a character the tokenizer drops), word 2 one; row 1: words 0-1
    word_ids = [[None, 0, 0, 2, None, None], [None, 0, 1, None, None, None]]
    own = torch.log_softmax(logits, dim=-1).numpy()
    unused = np.full(5, np.log(0.2), dtype=np.float32)  # word 1 of row 0: never scored
    teacher = [np.stack([own[0, 1], unused, own[0, 3]]), np.stack([own[1, 1], own[1, 2]])]
    for temperature in (1.0, 2.0):
        assert float(distillation_loss(logits, word_ids, teacher, temperature)) == pytest.approx(0, abs=1e-6)
    shifted = [np.stack([own[0, 3], unused, own[0, 1]]), teacher[1]]  # rows swapped between words 0 and 2
    assert float(distillation_loss(logits, word_ids, shifted, 1.0)) > 1e-3


def test_a_crf_student_learns_the_teacher_s_distributions_on_its_marginals() -> None:
    """With a CRF layer the student's distribution is its sequence model's: rows equal to its marginals
    (medner.decoding.marginals, as served) cost nothing, rows equal to its word logits' softmax do."""
    layer = transition_layer()
    with torch.no_grad():
        layer.transitions.copy_(torch.randn(5, 5))
    logits = torch.randn(2, 5, 5)
    word_ids = [[None, 0, 1, 2, None], [None, 0, 1, None, None]]
    words = [logits[0, 1:4].numpy(), logits[1, 1:3].numpy()]
    learned = (layer.start.detach().numpy(), layer.transitions.detach().numpy())
    served = [np.maximum(rows, RULED_OUT) for rows in marginals(words, learned)]
    softmax = [torch.log_softmax(torch.from_numpy(rows), dim=-1).numpy() for rows in words]
    with torch.no_grad():
        assert float(distillation_loss(logits, word_ids, served, 1.0, layer)) == pytest.approx(0, abs=1e-5)
        assert float(distillation_loss(logits, word_ids, softmax, 1.0, layer)) > 1e-2


def test_distillation_reaches_the_scored_pieces_only() -> None:
    logits = torch.randn(2, 4, 5, requires_grad=True)
    word_ids = [[None, 0, 1, None], [None, 0, 1, None]]
    teacher = [torch.log_softmax(torch.randn(2, 5), -1).numpy() for _ in range(2)]
    soft = distillation_loss(logits, word_ids, teacher, 1.0)
    soft.backward()
    assert torch.isfinite(soft) and logits.grad[:, 1:3].abs().sum() > 0 and logits.grad[:, [0, 3]].abs().sum() == 0


def test_a_teacher_must_be_a_saved_tagger_and_rules_out_entity_swaps(tiny_corpus: Path, tmp_path: Path) -> None:
    splits = read_behealthy(tiny_corpus)
    with pytest.raises(FileNotFoundError, match="not a saved tagger folder"):
        teacher_log_probs(tmp_path, splits["train"][:2])
    with pytest.raises(ValueError, match="swap_entities"):
        train(TrainConfig(teacher=str(tmp_path), swap_entities=0.3, max_train_sentences=2), splits["train"],
              splits["train"][:2], progress=False)


def test_a_seed_ensemble_teaches_its_mean_probabilities(tiny_corpus: Path, untrained_model_dir: Path,
                                                       tmp_path: Path) -> None:
    """Two confident teachers that disagree teach, per word, the mean of their probabilities: where each puts
    ~all of a word's mass on a different tag, the ensemble puts about half on each."""
    for name, scale in (("a", 30), ("b", -30)):
        tokenizer, model = load_model(untrained_model_dir)
        with torch.no_grad():
            model.classifier.weight *= scale
        save_model(model, tokenizer, tmp_path / name)
    sentences = read_behealthy(tiny_corpus)["train"][:3]
    one, other = (teacher_log_probs(tmp_path / name, sentences) for name in ("a", "b"))
    names = model_names(f"{tmp_path / 'a'}, {tmp_path / 'b'},")  # as --teacher A,B names them
    assert names == [str(tmp_path / "a"), str(tmp_path / "b")]
    both = teacher_log_probs(write_ensemble([Path(n) for n in names], tmp_path / "ensemble", names), sentences)
    for a, b, mean in zip(one, other, both):
        assert (a.argmax(1) != b.argmax(1)).any()  # the two teachers disagree on some words
        np.testing.assert_allclose(np.exp(mean), (np.exp(a) + np.exp(b)) / 2, atol=1e-5)
        np.testing.assert_allclose(np.exp(mean).sum(1), 1, atol=1e-5)


def test_a_crf_teacher_teaches_the_marginals_of_its_learned_transitions(tiny_corpus: Path, untrained_model_dir: Path,
                                                                       tmp_path: Path) -> None:
    """A teacher saved with learned scores that make every tag but O costly teaches O on far more words than its
    word logits alone say, and each word's row is a distribution."""
    tokenizer, model = load_model(untrained_model_dir)
    sentences = read_behealthy(tiny_corpus)["train"][:3]
    save_model(model, tokenizer, tmp_path / "plain")
    outside = BIO_TAGS.index(OUTSIDE)
    start = np.where(np.arange(len(BIO_TAGS)) == outside, 0.0, -8.0)
    transitions = np.tile(start, (len(BIO_TAGS), 1))
    save_model(model, tokenizer, tmp_path / "crf", SpanEdges().with_learned(start, transitions))
    plain, crf = (teacher_log_probs(tmp_path / name, sentences) for name in ("plain", "crf"))
    for words, taught in zip(plain, crf):
        np.testing.assert_allclose(np.exp(taught).sum(1), 1, atol=1e-5)
        assert (taught.argmax(1) == outside).all() and (words.argmax(1) != outside).any()
        np.testing.assert_allclose(taught, np.maximum(marginals([words], (start, transitions))[0], RULED_OUT),
                                   atol=1e-5)
        assert np.isfinite(taught).all()  # a ruled-out tag (I- on the first word) would make the KL NaN
        assert np.isfinite(float(distillation_loss(torch.randn(1, len(words) + 2, len(BIO_TAGS)),
                                                   [[None, *range(len(words)), None]], [taught], 1.0)))


@pytest.mark.slow
@pytest.mark.parametrize("crf", [False, True])
def test_a_student_learns_its_teacher_s_tags(tiny_corpus: Path, untrained_model_dir: Path, tmp_path: Path,
                                             crf: bool) -> None:
    """With the whole weight on the teacher (an untrained head made confident: tags unrelated to the gold labels),
    the student tags the training sentences as the teacher does, not as the gold labels say; the teacher-labelled
    copies (entities swapped for dictionary names) join the training set. A student with a CRF layer learns its
    emissions from the teacher the same way and keeps its layer's scores."""
    tokenizer, teacher = load_model(untrained_model_dir)
    with torch.no_grad():
        teacher.classifier.weight *= 30
    save_model(teacher, tokenizer, tmp_path)
    splits = read_behealthy(tiny_corpus)
    train_set, dev_set = split_dev(splits["train"], 0.2)
    config = TrainConfig(learning_rate=3e-4, epochs=3, batch_size=8, threads=1, patience=3, span_edges=False,
                         teacher=str(tmp_path), distill_weight=1.0, distill_temperature=1.0, distill_copies=1,
                         crf=crf)
    student = train(config, train_set, dev_set, progress=False)
    assert (student.span_edges is not None and student.span_edges.learned is not None) == crf
    assert [row["train_sentences"] for row in student.history] == [2 * len(train_set)] * 3
    assert all(np.isfinite(row["train_loss"]) for row in student.history)
    sentences = [s.tokens for s in train_set]
    taught = [w for s in predict(teacher, tokenizer, sentences, decoder="argmax") for w in s]
    learned = [w for s in predict(student.model, student.tokenizer, sentences, decoder="argmax") for w in s]
    gold = [w for s in train_set for w in s.labels]
    agreement = np.mean(np.array(learned) == np.array(taught))
    assert agreement > 0.75 and agreement > np.mean(np.array(learned) == np.array(gold)) + 0.4
