"""The export gates, both on the test split through the serving path (:mod:`medner.inference`): parity (PyTorch
against ONNX Runtime: the export is refused when they differ) and INT8 quality (the INT8 model is published only
within ``INT8_MAX_F1_DROP`` of fp32)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medner.data import Sentence
from medner.decoding import SpanEdges
from medner.inference import Encoder, decode_sentences, encode_sentences, torch_encoder
from medner.metrics import evaluate

PARITY_TOLERANCE = 1e-3
INT8_MAX_F1_DROP = 0.01  # 1.0 entity-F1 point


class ExportRefused(RuntimeError):
    """A gate failed; the message is the report."""


def torch_reference(model_dir: Path) -> Encoder:
    """The PyTorch model in ``model_dir`` (one, or a seed ensemble) as an encoder function (the reference for
    parity)."""
    from medner.model_io import load_tagger

    return torch_encoder(load_tagger(model_dir))


@dataclass
class GateReport:
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)


def parity_gate(
    tokenizer: Any, reference: Encoder, candidate: Encoder, sentences: Sequence[Sentence], decoder: str = "viterbi",
    edges: SpanEdges | None = None,
) -> tuple[GateReport, dict[str, float]]:
    """Compare two encoders on ``sentences``: max |logit diff| over real tokens, and decoded labels.
    Returns the report and the candidate's metrics."""
    tokens = [s.tokens for s in sentences]
    batch, ref = encode_sentences(tokens, tokenizer, reference)
    _, cand = encode_sentences(tokens, tokenizer, candidate)
    real = batch.attention_mask[:, : ref.shape[1]].astype(bool)
    max_diff = float(np.abs(ref - cand)[real].max())
    ref_labels = decode_sentences(batch, ref, decoder, tokens, edges)
    cand_labels = decode_sentences(batch, cand, decoder, tokens, edges)
    mismatched = sum(a != b for a, b in zip(ref_labels, cand_labels))
    details = {"max_abs_logit_diff": max_diff, "tolerance": PARITY_TOLERANCE,
               "sentences": len(sentences), "sentences_with_different_labels": mismatched}
    metrics = evaluate([s.labels for s in sentences], cand_labels)
    return GateReport(max_diff <= PARITY_TOLERANCE and mismatched == 0, details), metrics


def int8_gate(
    tokenizer: Any, encoder: Encoder, sentences: Sequence[Sentence], baseline_f1: float, decoder: str = "viterbi",
    edges: SpanEdges | None = None,
) -> tuple[GateReport, dict[str, float]]:
    """Entity F1 of ``encoder`` on ``sentences`` must be within INT8_MAX_F1_DROP of ``baseline_f1``."""
    tokens = [s.tokens for s in sentences]
    batch, logits = encode_sentences(tokens, tokenizer, encoder)
    predictions = decode_sentences(batch, logits, decoder, tokens, edges)
    metrics = evaluate([s.labels for s in sentences], predictions)
    drop = baseline_f1 - metrics["entity_f1"]
    details = {"entity_f1": metrics["entity_f1"], "baseline_entity_f1": baseline_f1, "drop": drop,
               "max_drop": INT8_MAX_F1_DROP}
    return GateReport(drop <= INT8_MAX_F1_DROP, details), metrics
