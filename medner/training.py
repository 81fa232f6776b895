"""Fine-tuning and prediction for the word-level transformer tagger.

Each word is scored by its first word-piece; word scores are decoded by :mod:`medner.decoding`. TrainFlow and
ExperimentFlow's candidates call :func:`train`; with a teacher it distils (:mod:`medner.distill`). The trained model
is saved and stored by :mod:`medner.model_io`.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medner.augment import entity_swapper
from medner.base_models import resolve_base_model
from medner.config import TrainConfig
from medner.crf_layer import crf_loss, transition_layer, with_learned_scores
from medner.data import Sentence
from medner.decoding import SpanEdges
from medner.distill import student_loss, teacher_log_probs, with_teacher_copies
from medner.labels import BIO_TAGS, ID2TAG, IGNORE_INDEX, TAG2ID, to_bio
from medner.metrics import evaluate
from medner.model_io import pick_device
from medner.progress import progress as progress_bar

log = logging.getLogger(__name__)


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0: all cores); returns the number used."""
    import torch

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def load_tokenizer_and_model(base_model: str, device: str = "cpu") -> tuple[Any, Any]:
    """Tokenizer and a token classifier with our tag set, from a hub id or a local folder."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if not tokenizer.is_fast:
        raise ValueError(f"{base_model}: a fast tokenizer is needed to map word-pieces to words")
    model = AutoModelForTokenClassification.from_pretrained(
        base_model, num_labels=len(BIO_TAGS), id2label=ID2TAG, label2id=TAG2ID
    )
    return tokenizer, model.to(device)


def encode_words(
    tokenizer: Any, sentences: Sequence[Sequence[str]], max_length: int
) -> tuple[dict[str, Any], list[list[int | None]]]:
    """Tokenise pre-split sentences; returns padded torch tensors and each row's word ids."""
    encoding = tokenizer(
        [list(s) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )
    word_ids = [encoding.word_ids(i) for i in range(len(sentences))]
    return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"]}, word_ids


def first_piece_targets(word_ids: Sequence[int | None], tags: Sequence[str]) -> list[int]:
    """Training targets: the tag id on each word's first word-piece, IGNORE_INDEX elsewhere."""
    targets, previous = [], None
    for word in word_ids:
        targets.append(IGNORE_INDEX if word is None or word == previous else TAG2ID[tags[word]])
        previous = word
    return targets


def predict(model: Any, tokenizer: Any, sentences: Sequence[Sequence[str]], decoder: str = "viterbi",
            edges: SpanEdges | None = None) -> list[list[str]]:
    """O/D/T labels for each pre-split sentence, through the serving code path (medner.inference)."""
    from medner.inference import predict_sentences, torch_encoder

    return predict_sentences(sentences, tokenizer, torch_encoder(model), decoder, edges)


def evaluate_model(
    model: Any, tokenizer: Any, sentences: Sequence[Sentence], decoder: str = "viterbi", edges: SpanEdges | None = None
) -> tuple[dict[str, float], list[list[str]]]:
    """Metrics of ``model`` on annotated sentences, and its predictions."""
    predictions = predict(model, tokenizer, [s.tokens for s in sentences], decoder, edges)
    return evaluate([s.labels for s in sentences], predictions), predictions


_LAYER_RE = re.compile(r"\.layers?\.(\d+)\.")


def parameter_groups(model: Any, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and LayerNorm weights; the head at ``head_learning_rate``;
    encoder layer ``i`` (of ``n``) at ``learning_rate * layer_decay ** (n - i)``, embeddings as layer 0; a CRF
    layer's scores (``model.crf``) at ``crf_learning_rate``."""
    n_layers = model.config.num_hidden_layers
    head_rate = config.head_learning_rate or config.learning_rate
    groups: dict[tuple[float, float], list[Any]] = {}
    for name, parameter in model.named_parameters():
        if name.startswith("crf."):  # a handful of scores from zero: far faster than the encoder, no decay
            groups.setdefault((config.crf_learning_rate, 0.0), []).append(parameter)
            continue
        if name.startswith(("classifier.", "score.")):
            rate = head_rate
        else:
            layer = _LAYER_RE.search(name)
            depth = int(layer.group(1)) + 1 if layer else (0 if "embeddings" in name else n_layers)
            rate = config.learning_rate * config.layer_decay ** (n_layers - depth)
        decay = 0.0 if name.endswith(("bias", "LayerNorm.weight")) else config.weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def average_state_dicts(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The element-wise mean of model state dicts, each tensor in its own dtype."""
    return {k: (sum(s[k] for s in states) / len(states)).to(v.dtype) for k, v in states[-1].items()}


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    dev_metrics: dict[str, float] = field(default_factory=dict)
    span_edges: SpanEdges | None = None  # learned from the training sentences (config.span_edges), with a CRF
    #                                     layer's scores (config.crf)
    train_seconds: float = 0.0
    device: str = "cpu"
    threads: int = 1


def _length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length sentences (less padding, same randomness per epoch)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(order), chunk):
        sorted_chunk = sorted(order[i : i + chunk], key=lambda j: lengths[j])
        batches += [sorted_chunk[k : k + batch_size] for k in range(0, len(sorted_chunk), batch_size)]
    rng.shuffle(batches)
    return batches


class _Selection:
    """Which weights training keeps: the epoch best on dev (stopping once ``patience`` epochs bring no gain), the
    mean of the last ``average_epochs`` epochs' weights, or, training on dev too, the last epoch's."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.keep_last = config.train_on_dev or config.average_epochs > 0  # no epoch chosen on dev
        self.best_f1, self.best_state, self.best_epoch, self.stale = -1.0, None, 0, 0
        self.dev_metrics: dict[str, float] = {}
        self.last_states: deque[dict[str, Any]] = deque(maxlen=config.average_epochs or 1)

    def after_epoch(self, epoch: int, model: Any, dev_metrics: dict[str, float]) -> bool:
        """Note the epoch's weights and dev scores; True to stop early."""
        if self.config.average_epochs:
            self.last_states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if self.keep_last:
            return False
        if dev_metrics["entity_f1"] > self.best_f1:
            self.best_f1, self.stale, self.best_epoch = dev_metrics["entity_f1"], 0, epoch
            self.dev_metrics, self.best_state = dev_metrics, copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        if self.stale >= self.config.patience:
            log.info("early stop: dev entity F1 has not improved for %d epochs", self.stale)
            return True
        return False

    def load_into(self, model: Any) -> None:
        if self.config.average_epochs:  # the mean of the last epochs' weights, in place of the best epoch's
            model.load_state_dict(average_state_dicts(list(self.last_states)))
        elif self.best_state is not None:
            model.load_state_dict(self.best_state)


def _dev_metrics(model: Any, tokenizer: Any, config: TrainConfig, dev: Sequence[Sentence], edges: SpanEdges | None
                 ) -> dict[str, float]:
    if config.train_on_dev:  # nothing is held out
        return dict.fromkeys(("entity_f1", "entity_f1_D", "entity_f1_T"), float("nan"))
    return evaluate_model(model, tokenizer, dev, config.decode, edges)[0]


def _loss_of_batch(model: Any, tokenizer: Any, config: TrainConfig, sentences: Sequence[Sentence], gold: int,
                   teacher: Sequence[np.ndarray] | None, device: str) -> Callable[[list[int]], Any]:
    """``loss(batch)``: the training loss of a batch of sentence indices (the gold cross-entropy; with a CRF layer,
    :func:`medner.crf_layer.crf_loss`; with a teacher, :func:`medner.distill.student_loss` on top of either;
    sentences from index ``gold`` on are teacher-labelled copies)."""
    import torch

    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=config.bf16)
    swap = entity_swapper(config.seed) if config.swap_entities else None

    def loss(batch: list[int]) -> Any:
        chosen = [sentences[i] for i in batch]
        if swap:
            chosen = [swap(s, config.swap_entities) for s in chosen]
        inputs, word_ids = encode_words(tokenizer, [s.tokens for s in chosen], config.max_length)
        targets = torch.tensor([first_piece_targets(w, to_bio(s.labels)) if i < gold else [IGNORE_INDEX] * len(w)
                                for i, w, s in zip(batch, word_ids, chosen)]).to(device)
        with autocast:
            out = model(**{k: v.to(device) for k, v in inputs.items()},
                        labels=targets if teacher is None and not config.crf else None)
        if teacher is not None:
            return student_loss(out.logits, targets, word_ids, [teacher[i] for i in batch], config.distill_weight,
                                config.distill_temperature, model.crf if config.crf else None)
        return crf_loss(out.logits, targets, model.crf) if config.crf else out.loss

    return loss


def _run_epoch(model: Any, batches: Sequence[list[int]], loss_of: Callable[[list[int]], Any], optimizer: Any,
               scheduler: Any, steps_left: int | None, bar: Any) -> list[float]:
    """One pass over ``batches`` (at most ``steps_left`` steps); the batches' losses."""
    import torch

    model.train()
    losses: list[float] = []
    for batch in bar:
        loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        if steps_left is not None and len(losses) >= steps_left:
            break
    return losses


def train(
    config: TrainConfig,
    train_sentences: Sequence[Sentence],
    dev_sentences: Sequence[Sentence],
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.base_model`` (a name, id or folder: :func:`medner.base_models.resolve_base_model`); keep
    the epoch with the best dev entity F1 (or, with ``average_epochs``, the mean of the last epochs; with
    ``train_on_dev``, train on train + dev and keep the last epoch: the dev scores are then not held out). With a
    ``teacher``, the model also learns its word tag distributions (:mod:`medner.distill`)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    if config.teacher and config.swap_entities:
        raise ValueError("distillation scores the training sentences once: set swap_entities to 0 with a teacher")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    threads, device = set_threads(config.threads), pick_device()
    tokenizer, model = load_tokenizer_and_model(resolve_base_model(config.base_model), device)
    if config.crf:
        model.crf = transition_layer().to(device)  # in the state dict: epoch selection keeps its scores too
    train_sentences = train_sentences[: config.max_train_sentences or None]
    if config.train_on_dev:
        train_sentences = [*train_sentences, *dev_sentences]
    edges = SpanEdges.learn((s.tokens, s.labels) for s in train_sentences) if config.span_edges else None
    started = time.perf_counter()  # a student's training time includes its teacher's labelling
    gold = len(train_sentences)  # the copies after them are the teacher's alone
    if config.teacher:
        train_sentences = with_teacher_copies(train_sentences, config.distill_copies, config.seed)
    teacher = teacher_log_probs(config.teacher, train_sentences) if config.teacher else None
    rng, lengths = random.Random(config.seed), [len(s.tokens) for s in train_sentences]
    total_steps = min(-(-len(train_sentences) // config.batch_size) * config.epochs, config.max_steps or 2**62)
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=config.learning_rate, fused=True)  # one kernel
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    loss_of = _loss_of_batch(model, tokenizer, config, train_sentences, gold, teacher, device)
    result = TrainResult(model, tokenizer, device=device, threads=threads, span_edges=edges)
    selection, step = _Selection(config), 0
    for epoch in range(1, config.epochs + 1):
        epoch_started, batches = time.perf_counter(), _length_bucketed_batches(lengths, config.batch_size, rng)
        bar = progress_bar(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not progress)
        losses = _run_epoch(model, batches, loss_of, optimizer, scheduler,
                            config.max_steps - step if config.max_steps else None, bar)
        step, epoch_seconds = step + len(losses), time.perf_counter() - epoch_started
        dev_metrics = _dev_metrics(model, tokenizer, config, dev_sentences, _decoding_edges(model, edges))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               **{f"dev_{k}": dev_metrics[k] for k in ("entity_f1", "entity_f1_D", "entity_f1_T")},
               "train_sentences": len(train_sentences), "epoch_seconds": epoch_seconds,
               "train_sentences_per_second": sum(map(len, batches[: len(losses)])) / epoch_seconds}
        result.history.append(row)
        log.info("epoch %d: loss %.4f, dev entity F1 %.4f", epoch, row["train_loss"], row["dev_entity_f1"])
        if on_epoch:
            on_epoch(row)
        if selection.after_epoch(epoch, model, dev_metrics) or (config.max_steps and step >= config.max_steps):
            break
    selection.load_into(model)
    result.span_edges = edges = _decoding_edges(model, edges)
    if config.crf:
        del model.crf  # its scores now travel with the span edges; the model is a plain tagger again
    result.best_epoch, result.dev_metrics = (
        (len(result.history), evaluate_model(model, tokenizer, dev_sentences, config.decode, edges)[0])
        if selection.keep_last else (selection.best_epoch, selection.dev_metrics))
    result.train_seconds = time.perf_counter() - started
    return result


def _decoding_edges(model: Any, edges: SpanEdges | None) -> SpanEdges | None:
    """What the model is decoded with: the span edges, carrying its CRF layer's scores where it has one."""
    return with_learned_scores(edges, model.crf) if hasattr(model, "crf") else edges
