"""Plots and tables for Metaflow cards (matplotlib figures; the flows add them to cards)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medner.data import Sentence
from medner.labels import ENTITY_NAMES, ENTITY_TYPES, FILE_LABELS
from medner.spans import labels_to_spans


def _figure(width: float = 6, height: float = 3.5) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained")


def entity_length_histogram(entity_lengths: Mapping[str, Mapping[int, int]]) -> Any:
    """Bars of entity length (tokens) per type."""
    fig, ax = _figure()
    width = 0.4
    for k, label in enumerate(ENTITY_TYPES):
        counts = entity_lengths.get(label, {})
        xs = [int(x) + (k - 0.5) * width for x in counts]
        ax.bar(xs, list(counts.values()), width=width, label=f"{label} ({ENTITY_NAMES[label]})")
    ax.set_xlabel("entity length (tokens)")
    ax.set_ylabel("entities")
    ax.set_title("Entity length by type")
    ax.legend()
    return fig


def learning_curve(history: Sequence[Mapping[str, float]]) -> Any:
    """Training loss and dev entity F1 per epoch."""
    fig, ax = _figure()
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], "o-", color="tab:gray", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_xticks(epochs)
    ax.set_ylabel("train loss")
    ax2 = ax.twinx()
    for key, style in (("dev_entity_f1", "o-"), ("dev_entity_f1_D", "--"), ("dev_entity_f1_T", ":")):
        ax2.plot(epochs, [row[key] for row in history], style, label=key.replace("dev_", "dev "))
    ax2.set_ylabel("dev entity F1")
    ax2.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower right")
    ax.set_title("Learning curve")
    return fig


def confusion_plot(matrix: Mapping[str, Mapping[str, int]]) -> Any:
    """Token-level confusion matrix, rows normalised to the gold label."""
    import numpy as np

    counts = np.array([[matrix[g][p] for p in FILE_LABELS] for g in FILE_LABELS], dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = _figure(4, 3.5)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(FILE_LABELS)):
        for j in range(len(FILE_LABELS)):
            ax.text(j, i, f"{int(counts[i, j])}\n{shares[i, j]:.0%}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(FILE_LABELS)), FILE_LABELS)
    ax.set_yticks(range(len(FILE_LABELS)), FILE_LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("Token confusion (test)")
    return fig


def per_type_rows(metrics: Mapping[str, float]) -> list[list[str]]:
    """Rows ``[type, precision, recall, F1, support]`` for the micro average and each type."""
    rows = []
    for name, suffix in (("all (micro)", ""), *((f"{t} ({ENTITY_NAMES[t]})", f"_{t}") for t in ENTITY_TYPES)):
        rows.append([name] + [f"{metrics[f'entity_{m}{suffix}']:.3f}" for m in ("precision", "recall", "f1")]
                    + [str(int(metrics[f"support{suffix}"]))])
    return rows


def error_rows(
    sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]], limit: int = 20
) -> list[list[str]]:
    """Up to ``limit`` sentences where predicted spans differ from gold: ``[gold, predicted]``,
    each span shown as ``[words]TYPE``."""

    def show(tokens: Sequence[str], labels: Sequence[str]) -> str:
        return "; ".join(f"[{' '.join(tokens[s:e])}]{lab}" for s, e, lab in labels_to_spans(labels)) or "-"

    rows = []
    for sentence, predicted in zip(sentences, predictions):
        if list(sentence.labels) != list(predicted):
            rows.append([show(sentence.tokens, sentence.labels), show(sentence.tokens, predicted)])
            if len(rows) >= limit:
                break
    return rows


def training_card(
    card: Any,
    metrics: Mapping[str, float],
    metrics_argmax: Mapping[str, float],
    history: Sequence[Mapping[str, float]],
    config: Mapping[str, Any],
    data_version: str,
    confusion: Mapping[str, Mapping[str, int]],
    test: Sequence[Sentence],
    predictions: Sequence[Sequence[str]],
) -> None:
    """Fill a Metaflow card with a training run's results."""
    from metaflow.cards import Image, Markdown, Table

    card.append(Markdown(
        f"# Test entity F1 {metrics['entity_f1']:.3f}\n\n"
        f"{config['decode']} decoding (argmax: {metrics_argmax['entity_f1']:.3f}); relaxed F1 "
        f"{metrics['entity_f1_relaxed']:.3f}; token-weighted F1 {metrics['token_weighted_f1']:.3f}; "
        f"data `{data_version}`; trained in {metrics['train_seconds']:.0f}s."
    ))
    card.append(Table(per_type_rows(metrics), headers=["entities", "precision", "recall", "F1", "support"]))
    if history:
        card.append(Image.from_matplotlib(learning_curve(history)))
    card.append(Image.from_matplotlib(confusion_plot(confusion)))
    card.append(Markdown("## Sample of errors (test)"))
    card.append(Table(error_rows(test, predictions) or [["-", "-"]], headers=["gold", "predicted"]))
    card.append(Markdown("## Configuration"))
    card.append(Table([[k, str(v)] for k, v in config.items()], headers=["parameter", "value"]))


def experiment_chart(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Dev and test entity F1 per candidate, side by side."""
    import numpy as np

    fig, ax = _figure(max(6, 1.4 * len(rows)), 3.5)
    x = np.arange(len(rows))
    for offset, split, color in ((-0.2, "dev", "tab:gray"), (0.2, "test", "tab:blue")):
        ax.bar(x + offset, [r[split]["entity_f1"] for r in rows], 0.4, label=f"{split} entity F1", color=color)
    ax.set_xticks(x, [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("entity F1")
    ax.legend(fontsize=8)
    return fig


def experiment_card(card: Any, rows: Sequence[Mapping[str, Any]], challenger: str, data_version: str) -> None:
    """Fill a Metaflow card with an experiment's comparison table and chart."""
    from metaflow.cards import Image, Markdown, Table

    ranked = sorted(rows, key=lambda r: -r["dev"]["entity_f1"])
    card.append(Markdown(
        f"# Challenger: {challenger}\n\n{len(rows)} candidates on data `{data_version}`, ranked by dev entity F1 "
        "(the selection criterion); test scores are reported, never used to choose."))
    card.append(Table([[
        r["name"] + (" (challenger)" if r["name"] == challenger else ""), r["kind"],
        f"{r['dev']['entity_f1']:.3f}", f"{r['test']['entity_f1']:.3f}", f"{r['test']['entity_f1_D']:.3f}",
        f"{r['test']['entity_f1_T']:.3f}", f"{r['test']['entity_f1_relaxed']:.3f}",
        f"{r['test']['token_weighted_f1']:.3f}", f"{r['train_seconds']:.0f}", f"{r['model_mb']:.1f}",
        f"{r['latency_ms']:.1f}"] for r in ranked], headers=[
        "candidate", "kind", "dev F1", "test F1", "test F1 D", "test F1 T", "test relaxed F1",
        "test token-weighted F1", "train s", "model MB", "latency ms/sentence"]))
    card.append(Image.from_matplotlib(experiment_chart(ranked)))
    card.append(Markdown("## Parameters"))
    card.append(Table([[r["name"], ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"]
                       for r in ranked], headers=["candidate", "parameters"]))
