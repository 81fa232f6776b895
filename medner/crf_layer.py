"""A learned CRF layer on the tagger's word logits (``TrainConfig.crf``): start and tag transition scores trained
with the encoder by the linear-chain CRF log-likelihood, on top of the IOB2 rules (the same that Viterbi keeps).

The word logits stay the model's output, so export, ONNX and the served graph are unchanged; the learned scores
travel with the span edges (:class:`medner.decoding.SpanEdges`), which every decoder of a model reads, and Viterbi
adds them: training's dev selection, evaluation and serving decode alike. Not to be confused with
:mod:`medner.crf`, the classic-features CRF baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medner.decoding import SpanEdges, iob2_constraints
from medner.labels import BIO_TAGS, IGNORE_INDEX

FORBIDDEN = -1e4  # a transition the IOB2 rules forbid, as a finite score the log-sum-exp can carry


def transition_layer() -> Any:
    """A torch module holding the learned ``start`` (per tag) and ``transitions`` (tag -> tag) scores, zeros."""
    import torch

    class TransitionLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.start = torch.nn.Parameter(torch.zeros(len(BIO_TAGS)))
            self.transitions = torch.nn.Parameter(torch.zeros(len(BIO_TAGS), len(BIO_TAGS)))

    return TransitionLayer()


def _sequences(logits: Any, words_at: Any, layer: Any, temperature: float = 1.0) -> tuple[Any, Any, Any, Any]:
    """The batch as word sequences: emissions ``(batch, words, tags)`` (each sentence's word logits in order, zeros
    past its end), their mask, and the start and transition scores (``layer``'s on top of the IOB2 rules), all
    divided by ``temperature``. ``words_at`` ``(batch, pieces)``: true on each scored word's first piece."""
    import torch

    lengths = words_at.sum(dim=1)
    words = int(lengths.max()) if len(lengths) else 0
    mask = torch.arange(words, device=logits.device)[None, :] < lengths[:, None]
    emissions = logits.new_zeros((len(lengths), words, len(BIO_TAGS)), dtype=torch.float32)
    emissions[mask] = logits[words_at].float() / temperature  # row-major: each sentence's words in order
    rule_start, rule_pairs = (torch.tensor(np.maximum(rule, FORBIDDEN), dtype=torch.float32, device=logits.device)
                              for rule in iob2_constraints())
    return emissions, mask, (layer.start + rule_start) / temperature, (layer.transitions + rule_pairs) / temperature


def _forward(emissions: Any, mask: Any, start: Any, pairs: Any) -> list[Any]:
    """The forward algorithm's log scores ``(batch, tags)`` at each word position; past a sentence's end, its last."""
    import torch

    alphas = [start + emissions[:, 0]]
    for i in range(1, emissions.shape[1]):
        step = torch.logsumexp(alphas[-1][:, :, None] + pairs, dim=1) + emissions[:, i]
        alphas.append(torch.where(mask[:, i, None], step, alphas[-1]))
    return alphas


def crf_loss(logits: Any, targets: Any, layer: Any) -> Any:
    """The negative CRF log-likelihood of the gold tags per word, over a batch: ``logits`` ``(batch, pieces,
    tags)``, ``targets`` ``(batch, pieces)`` (a tag id on each word's first piece, :data:`IGNORE_INDEX` elsewhere);
    each sentence's word logits are its emissions, ``layer`` (:func:`transition_layer`) its transition scores."""
    keep = targets != IGNORE_INDEX
    emissions, mask, start, pairs = _sequences(logits, keep, layer)
    if not mask.any():
        return logits.sum() * 0.0
    lengths = mask.sum(dim=1)
    tags = targets.new_zeros(mask.shape)
    tags[mask] = targets[keep]
    gold = (start[tags[:, 0]] + (emissions.gather(2, tags[..., None]).squeeze(-1) * mask).sum(dim=1)
            + (pairs[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(dim=1))
    partition = _forward(emissions, mask, start, pairs)[-1].logsumexp(dim=1)
    return ((partition - gold) * (lengths > 0)).sum() / lengths.sum()


def log_marginals(logits: Any, words_at: Any, layer: Any, temperature: float = 1.0) -> Any:
    """Each scored word's tag log-probabilities under the CRF (forward-backward, differentiable), ``(words,
    tags)`` with the words in ``words_at``'s row-major order: what a CRF student learns its teacher's
    distributions on (:func:`medner.distill.distillation_loss`). The torch twin of
    :func:`medner.decoding.marginals`, which serves them; the scores are divided by ``temperature``."""
    import torch

    emissions, mask, start, pairs = _sequences(logits, words_at, layer, temperature)
    if not mask.any():
        return emissions[mask]
    alphas = _forward(emissions, mask, start, pairs)
    betas = [torch.zeros_like(alphas[0])]  # at a sentence's last word and past it: log 1
    for i in range(emissions.shape[1] - 2, -1, -1):
        step = torch.logsumexp(pairs[None] + (emissions[:, i + 1] + betas[0])[:, None, :], dim=2)
        betas.insert(0, torch.where(mask[:, i + 1, None], step, torch.zeros_like(step)))
    joint = torch.stack(alphas, dim=1) + torch.stack(betas, dim=1)
    return (joint - alphas[-1].logsumexp(dim=1)[:, None, None])[mask]


def with_learned_scores(edges: SpanEdges | None, layer: Any) -> SpanEdges:
    """``edges`` (or none) carrying ``layer``'s current scores, for the decoder."""
    return (edges or SpanEdges()).with_learned(layer.start.detach().float().cpu().numpy(),
                                               layer.transitions.detach().float().cpu().numpy())
