"""Distillation: a small tagger (the student) learns a larger trained one's word tag distributions (the teacher's)
beside the gold labels, optionally on copies of the training sentences that only the teacher labels.

:func:`medner.training.train` calls these when ``TrainConfig.teacher`` names a saved tagger folder; TrainFlow's
``--teacher`` resolves a run to one (:func:`medner.steps.model_folder`). What it gave:
benchmarks/results/accuracy.md (the ``distill-*`` candidates).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medner.augment import entity_swapper
from medner.crf_layer import crf_loss, log_marginals
from medner.data import Sentence
from medner.decoding import SpanEdges, marginals
from medner.labels import BIO_TAGS, IGNORE_INDEX
from medner.model_io import load_model, pick_device

COPY_SWAP_CHANCE = 0.5  # of each entity in a teacher-labelled copy
RULED_OUT = -30.0  # a CRF teacher's log-probability for a tag the IOB2 rules rule out: finite, so the KL stays so


def teacher_log_probs(teacher: Path | str, sentences: Sequence[Sentence]) -> list[np.ndarray]:
    """Each sentence's per-word tag log-probabilities (words x BIO_TAGS) by the tagger saved in ``teacher``
    (``medner.model_io.save_model``), through the serving path: the soft targets. A seed ensemble's folder
    (``medner.model_io.write_ensemble``) teaches its members' mean probabilities. A teacher trained with a CRF
    layer teaches its sequence model's per-word marginals (:func:`medner.decoding.marginals`): its word logits
    are emissions, which its learned transition scores complete."""
    from medner.inference import sentence_log_probs, torch_encoder
    from medner.model_io import ENSEMBLE_FILE, is_ensemble

    if not (Path(teacher, "config.json").is_file() or is_ensemble(teacher)):
        raise FileNotFoundError(f"teacher {teacher}: not a saved tagger folder (no config.json, no {ENSEMBLE_FILE})")
    tokenizer, model = load_model(teacher, pick_device())
    if model.config.num_labels != len(BIO_TAGS):
        raise ValueError(f"teacher {teacher}: {model.config.num_labels} tags, expected {len(BIO_TAGS)} ({BIO_TAGS})")
    log_probs = sentence_log_probs([s.tokens for s in sentences], tokenizer, torch_encoder(model))
    edges = SpanEdges.load(teacher)
    if edges is None or edges.learned is None:
        return log_probs
    return [np.maximum(taught, RULED_OUT).astype(words.dtype)
            for words, taught in zip(log_probs, marginals(log_probs, edges.learned))]


def with_teacher_copies(sentences: Sequence[Sentence], copies: int, seed: int) -> list[Sentence]:
    """``sentences``, then ``copies`` copies of each with entities swapped for dictionary names of their type
    (:mod:`medner.augment`): new words in known contexts, which the teacher alone labels."""
    swap = entity_swapper(seed + 1)  # not the gold swap's stream (TrainConfig.swap_entities)
    return [*sentences, *(swap(s, COPY_SWAP_CHANCE) for _ in range(copies) for s in sentences)]


def distillation_loss(logits: Any, word_ids: Sequence[Sequence[int | None]], teacher: Sequence[np.ndarray],
                      temperature: float, crf_layer: Any = None) -> Any:
    """T^2 * KL(teacher || model) at temperature T, averaged over the words scored: each word's first word-piece
    (a truncated sentence's words past the window are not scored). ``teacher``: each row's per-word
    log-probabilities (:func:`teacher_log_probs`). The model's distribution is its word logits' softmax, or with
    ``crf_layer`` (a student with a CRF layer) its sequence model's marginals
    (:func:`medner.crf_layer.log_marginals`): what it decodes and serves."""
    import torch

    words_at = torch.zeros(logits.shape[:2], dtype=torch.bool, device=logits.device)
    rows = []
    for row, (ids, log_probs) in enumerate(zip(word_ids, teacher)):
        previous = None
        for position, word in enumerate(ids):
            if word is not None and word != previous:
                words_at[row, position] = True
                rows.append(log_probs[word])
            previous = word
    student = (torch.log_softmax(logits[words_at].float() / temperature, dim=-1) if crf_layer is None
               else log_marginals(logits, words_at, crf_layer, temperature))
    target = torch.log_softmax(torch.from_numpy(np.stack(rows)).to(logits.device) / temperature, dim=-1)
    return torch.nn.functional.kl_div(student, target, log_target=True, reduction="batchmean") * temperature**2


def student_loss(logits: Any, targets: Any, word_ids: Sequence[Sequence[int | None]], teacher: Sequence[np.ndarray],
                 weight: float, temperature: float, crf_layer: Any = None) -> Any:
    """``(1 - weight) *`` the gold loss over the rows that have gold tags (``targets`` not IGNORE_INDEX; a batch
    of teacher-labelled copies has none) ``+ weight *`` :func:`distillation_loss`. The gold loss is the
    cross-entropy, or with ``crf_layer`` (a student with a CRF layer) :func:`medner.crf_layer.crf_loss`, whose
    marginals then learn the teacher's distributions."""
    import torch

    gold = targets != IGNORE_INDEX
    if not gold.any():
        hard = torch.zeros((), device=logits.device)
    elif crf_layer is not None:
        hard = crf_loss(logits, targets, crf_layer)
    else:
        hard = torch.nn.functional.cross_entropy(logits[gold].float(), targets[gold])
    return (1 - weight) * hard + weight * distillation_loss(logits, word_ids, teacher, temperature, crf_layer)
