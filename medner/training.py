"""Fine-tuning and prediction for the word-level transformer tagger.

Each word is scored by its first word-piece; word scores are decoded by :mod:`medner.decoding`.
Flows call :func:`train` and :func:`predict`; tests call them directly on tiny data.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medner.config import TrainConfig
from medner.data import Sentence
from medner.labels import BIO_TAGS, ID2TAG, TAG2ID, to_bio
from medner.metrics import evaluate
from medner.progress import progress as progress_bar

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # loss ignores continuation word-pieces and special tokens


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0: all cores); returns the number used."""
    import torch

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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


def predict(model: Any, tokenizer: Any, sentences: Sequence[Sequence[str]], decoder: str = "viterbi"
            ) -> list[list[str]]:
    """O/D/T labels for each pre-split sentence, through the serving code path (medner.inference)."""
    from medner.inference import predict_sentences, torch_encoder

    return predict_sentences(sentences, tokenizer, torch_encoder(model), decoder)


def evaluate_model(
    model: Any, tokenizer: Any, sentences: Sequence[Sentence], decoder: str = "viterbi"
) -> tuple[dict[str, float], list[list[str]]]:
    """Metrics of ``model`` on annotated sentences, and its predictions."""
    predictions = predict(model, tokenizer, [s.tokens for s in sentences], decoder)
    return evaluate([s.labels for s in sentences], predictions), predictions


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    dev_metrics: dict[str, float] = field(default_factory=dict)
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


def train(
    config: TrainConfig,
    train_sentences: Sequence[Sentence],
    dev_sentences: Sequence[Sentence],
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.resolved_base_model()``; keep the epoch with the best dev entity F1."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    threads = set_threads(config.threads)
    device = pick_device()
    tokenizer, model = load_tokenizer_and_model(config.resolved_base_model(), device)

    if config.max_train_sentences:
        train_sentences = train_sentences[: config.max_train_sentences]
    rng = random.Random(config.seed)
    lengths = [len(s.tokens) for s in train_sentences]
    steps_per_epoch = -(-len(train_sentences) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)

    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": config.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)  # one kernel per step
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=config.bf16)

    result = TrainResult(model, tokenizer, device=device, threads=threads)
    best_f1, best_state, stale, step = -1.0, None, 0, 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_started, losses = time.perf_counter(), []
        batches = _length_bucketed_batches(lengths, config.batch_size, rng)
        bar = progress_bar(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not progress)
        for batch in bar:
            sentences = [train_sentences[i] for i in batch]
            inputs, word_ids = encode_words(tokenizer, [s.tokens for s in sentences], config.max_length)
            targets = torch.tensor(
                [first_piece_targets(w, to_bio(s.labels)) for w, s in zip(word_ids, sentences)]
            )
            with autocast:
                out = model(**{k: v.to(device) for k, v in inputs.items()}, labels=targets.to(device))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(out.loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
            step += 1
            if config.max_steps and step >= config.max_steps:
                break
        epoch_seconds = time.perf_counter() - epoch_started
        dev_metrics, _ = evaluate_model(model, tokenizer, dev_sentences, config.decode)
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "dev_entity_f1": dev_metrics["entity_f1"],
            "dev_entity_f1_D": dev_metrics["entity_f1_D"],
            "dev_entity_f1_T": dev_metrics["entity_f1_T"],
            "epoch_seconds": epoch_seconds,
            "train_sentences_per_second": sum(map(len, batches[: len(losses)])) / epoch_seconds,
        }
        result.history.append(row)
        log.info("epoch %d: loss %.4f, dev entity F1 %.4f", epoch, row["train_loss"], row["dev_entity_f1"])
        if on_epoch:
            on_epoch(row)
        if dev_metrics["entity_f1"] > best_f1:
            best_f1, stale = dev_metrics["entity_f1"], 0
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.dev_metrics = epoch, dev_metrics
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early stop: dev entity F1 has not improved for %d epochs", stale)
                break
        if config.max_steps and step >= config.max_steps:
            break
    result.train_seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def save_model(model: Any, tokenizer: Any, path: Path | str) -> Path:
    """Save model and tokenizer in Hugging Face format (what export loads)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_model(path: Path | str, device: str = "cpu") -> tuple[Any, Any]:
    """Load a model saved by :func:`save_model`."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModelForTokenClassification.from_pretrained(path).to(device)


def model_to_files(model: Any, tokenizer: Any) -> dict[str, bytes]:
    """The saved model folder as ``{relative path: bytes}``, to store as a Metaflow artifact
    (works unchanged with the local and the S3 datastore)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tokenizer, tmp)
        return {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


def files_to_dir(files: dict[str, bytes], path: Path | str) -> Path:
    """Write a model stored by :func:`model_to_files` into ``path`` (then :func:`load_model` it)."""
    path = Path(path)
    for name, payload in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(payload)
    return path
