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


def crf_loss(logits: Any, targets: Any, layer: Any) -> Any:
    """The negative CRF log-likelihood of the gold tags per word, over a batch: ``logits`` ``(batch, pieces,
    tags)``, ``targets`` ``(batch, pieces)`` (a tag id on each word's first piece, :data:`IGNORE_INDEX` elsewhere);
    each sentence's word logits are its emissions, ``layer`` (:func:`transition_layer`) its transition scores."""
    import torch

    keep = targets != IGNORE_INDEX
    lengths = keep.sum(dim=1)
    words = int(lengths.max()) if len(lengths) else 0
    if words == 0:
        return logits.sum() * 0.0
    mask = torch.arange(words, device=logits.device)[None, :] < lengths[:, None]
    emissions = logits.new_zeros((len(lengths), words, len(BIO_TAGS)), dtype=torch.float32)
    tags = targets.new_zeros((len(lengths), words))
    emissions[mask], tags[mask] = logits[keep].float(), targets[keep]  # row-major: each sentence's words in order
    rule_start, rule_pairs = (torch.tensor(np.maximum(rule, FORBIDDEN), dtype=torch.float32, device=logits.device)
                              for rule in iob2_constraints())
    start, pairs = layer.start + rule_start, layer.transitions + rule_pairs
    gold = (start[tags[:, 0]] + (emissions.gather(2, tags[..., None]).squeeze(-1) * mask).sum(dim=1)
            + (pairs[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(dim=1))
    alpha = start + emissions[:, 0]
    for i in range(1, words):
        step = torch.logsumexp(alpha[:, :, None] + pairs, dim=1) + emissions[:, i]
        alpha = torch.where(mask[:, i, None], step, alpha)
    partition = torch.logsumexp(alpha, dim=1)
    return ((partition - gold) * (lengths > 0)).sum() / lengths.sum()


def with_learned_scores(edges: SpanEdges | None, layer: Any) -> SpanEdges:
    """``edges`` (or none) carrying ``layer``'s current scores, for the decoder."""
    return (edges or SpanEdges()).with_learned(layer.start.detach().float().cpu().numpy(),
                                               layer.transitions.detach().float().cpu().numpy())
