"""The learned CRF layer: its loss is the exact CRF likelihood, its scores change what Viterbi decodes, travel with
the span edges (saved, loaded, averaged over an ensemble's members) and come out of training."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from medner.config import TrainConfig
from medner.crf_layer import crf_loss, log_marginals, transition_layer, with_learned_scores
from medner.data import read_behealthy, split_dev
from medner.decoding import SpanEdges, decode, iob2_constraints, viterbi
from medner.labels import BIO_TAGS, IGNORE_INDEX, TAG2ID
from medner.model_io import files_to_dir, model_to_files, save_model, write_ensemble
from medner.training import train

K = len(BIO_TAGS)


def valid_path_scores(emissions: np.ndarray, start: np.ndarray, pairs: np.ndarray) -> dict[tuple[int, ...], float]:
    """Every IOB2-valid tag path of one sentence and its score (rules, learned scores and emissions)."""
    rule_start, rule_pairs = iob2_constraints()

    def score(path: tuple[int, ...]) -> float:
        total = rule_start[path[0]] + start[path[0]] + emissions[0, path[0]]
        for i in range(1, len(path)):
            total += rule_pairs[path[i - 1], path[i]] + pairs[path[i - 1], path[i]] + emissions[i, path[i]]
        return total

    scores = {path: score(path) for path in itertools.product(range(K), repeat=len(emissions))}
    return {path: value for path, value in scores.items() if np.isfinite(value)}


def brute_force_nll(emissions: np.ndarray, tags: list[int], start: np.ndarray, pairs: np.ndarray) -> float:
    """-log P(tags) by enumerating every IOB2-valid path of one sentence."""
    scores = valid_path_scores(emissions, start, pairs)
    return float(np.logaddexp.reduce(list(scores.values())) - scores[tuple(tags)])


def brute_force_marginals(emissions: np.ndarray, start: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """P(word i has tag k) by enumerating every IOB2-valid path of one sentence: ``(words, tags)``."""
    scores = valid_path_scores(emissions, start, pairs)
    partition = np.logaddexp.reduce(list(scores.values()))
    found = np.zeros((len(emissions), K))
    for path, value in scores.items():
        found[np.arange(len(path)), path] += np.exp(value - partition)
    return found


def test_the_loss_is_the_crf_negative_log_likelihood_per_word() -> None:
    """Two sentences in one batch, words on some pieces only, one sentence shorter: the loss is the sum of each
    sentence's exact -log P(gold path) over every valid path, divided by the words."""
    generator = torch.Generator().manual_seed(0)
    layer = transition_layer()
    with torch.no_grad():
        layer.start.copy_(torch.randn(K, generator=generator))
        layer.transitions.copy_(torch.randn(K, K, generator=generator))
    logits = torch.randn(2, 6, K, generator=generator)
    b_d, i_d, b_t, outside = TAG2ID["B-D"], TAG2ID["I-D"], TAG2ID["B-T"], TAG2ID["O"]
    targets = torch.tensor([[IGNORE_INDEX, b_d, i_d, IGNORE_INDEX, outside, IGNORE_INDEX],
                            [IGNORE_INDEX, b_t, outside, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    start, pairs = layer.start.detach().numpy(), layer.transitions.detach().numpy()
    expected = (brute_force_nll(logits[0, [1, 2, 4]].numpy(), [b_d, i_d, outside], start, pairs)
                + brute_force_nll(logits[1, [1, 2]].numpy(), [b_t, outside], start, pairs)) / 5
    assert crf_loss(logits, targets, layer).item() == pytest.approx(expected, rel=1e-5)


def test_marginals_are_each_word_s_tag_probabilities_over_the_valid_paths_and_differentiable() -> None:
    """Two sentences of 3 and 1 words on some pieces of a batch: each scored word's marginals (in the pieces'
    row-major order) are those of enumerating every path, also at temperature 2 (every score halved); the
    gradient reaches the scored pieces only."""
    generator = torch.Generator().manual_seed(1)
    layer = transition_layer()
    with torch.no_grad():
        layer.start.copy_(torch.randn(K, generator=generator))
        layer.transitions.copy_(torch.randn(K, K, generator=generator))
    logits = torch.randn(2, 5, K, generator=generator, requires_grad=True)
    words_at = torch.tensor([[False, True, True, False, True], [False, False, True, False, False]])
    start, pairs = layer.start.detach().numpy(), layer.transitions.detach().numpy()
    emissions = logits.detach().numpy()
    for temperature in (1.0, 2.0):
        expected = np.concatenate([brute_force_marginals(emissions[0, [1, 2, 4]] / temperature, start / temperature,
                                                         pairs / temperature),
                                   brute_force_marginals(emissions[1, [2]] / temperature, start / temperature,
                                                         pairs / temperature)])
        found = log_marginals(logits, words_at, layer, temperature)
        np.testing.assert_allclose(found.detach().exp().numpy(), expected, atol=1e-5)
    found[:, TAG2ID["B-D"]].sum().backward()
    assert logits.grad[words_at].abs().sum() > 0 and logits.grad[~words_at].abs().sum() == 0


def test_learned_transitions_change_the_decoded_path_and_travel_with_the_edges(tmp_path: Path) -> None:
    """Emissions that lean to one two-word disease: with a learned penalty on B-D -> I-D the second word is left
    out instead; the decoder reads the scores from the edges, with or without words; they survive saving and
    loading, and edges saved before them still load."""
    log_probs = np.log(np.full((2, K), 0.02))
    log_probs[0, TAG2ID["B-D"]] = log_probs[1, TAG2ID["I-D"]] = np.log(0.5)
    log_probs[1, TAG2ID["O"]] = np.log(0.4)
    assert decode(log_probs) == ["D", "D"]
    transitions = np.zeros((K, K))
    transitions[TAG2ID["B-D"], TAG2ID["I-D"]] = -1.0
    edges = SpanEdges(frozenset({"and"}), frozenset(), tuple([0.0] * K), tuple(map(tuple, transitions)))
    assert [BIO_TAGS[i] for i in viterbi(log_probs, learned=edges.learned)] == ["B-D", "O"]
    assert decode(log_probs, edges=edges) == decode(log_probs, words=["a", "b"], edges=edges) == ["D", "O"]
    (tmp_path / "span_edges.json").write_text(edges.to_json())
    assert SpanEdges.load(tmp_path) == edges
    (tmp_path / "span_edges.json").write_text('{"never_first": ["and"], "never_last": []}')
    assert SpanEdges.load(tmp_path).learned is None


def test_an_ensemble_decodes_with_its_members_mean_scores(untrained_model_dir: Path, tmp_path: Path) -> None:
    from medner.model_io import load_model

    tokenizer, model = load_model(untrained_model_dir)
    folders = []
    for name, value in (("a", 1.0), ("b", 3.0)):
        layer = transition_layer()
        with torch.no_grad():
            layer.transitions.fill_(value)
        folders.append(save_model(model, tokenizer, tmp_path / name, with_learned_scores(None, layer)))
    ensemble = SpanEdges.load(write_ensemble(folders, tmp_path / "ensemble"))
    assert ensemble.learned[1].tolist() == np.full((K, K), 2.0).tolist()
    assert SpanEdges.load(folders[0]).learned[1][0, 0] == 1.0  # the member's own file is not written through
    plain = save_model(model, tokenizer, tmp_path / "plain")
    with pytest.raises(ValueError, match="one recipe"):
        write_ensemble([folders[0], plain], tmp_path / "mixed")


@pytest.mark.slow
def test_training_with_a_crf_layer_learns_scores_the_saved_model_decodes_with(tiny_corpus: Path) -> None:
    splits = read_behealthy(tiny_corpus)
    train_set, dev_set = split_dev(splits["train"], 0.2)
    config = TrainConfig(learning_rate=3e-4, epochs=2, batch_size=8, threads=1, patience=2, crf=True)
    result = train(config, train_set, dev_set, progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert not hasattr(result.model, "crf")  # a plain tagger: export and serving see the usual graph
    learned = result.span_edges.learned
    assert learned is not None and np.abs(learned[1]).max() > 0  # moved from zero
    assert result.span_edges.never_last  # the span edges are kept beside them
    folder = files_to_dir(model_to_files(result.model, result.tokenizer, result.span_edges),
                          tiny_corpus.parent / "crf-model")
    assert SpanEdges.load(folder) == result.span_edges
