"""Plots and tables for Metaflow cards (matplotlib figures; the flows add them to cards)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from medner.data import Sentence
from medner.labels import ENTITY_NAMES, ENTITY_TYPES, FILE_LABELS
from medner.metrics import ERROR_CATEGORIES, error_breakdown


def new_figure(width: float = 6, height: float = 3.5) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained")


def entity_length_histogram(entity_lengths: Mapping[str, Mapping[int, int]]) -> Any:
    """Bars of entity length (tokens) per type."""
    fig, ax = new_figure()
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
    fig, ax = new_figure()
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
    fig, ax = new_figure(4, 3.5)
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


def error_count_rows(metrics: Mapping[str, float]) -> list[list[str]]:
    """Rows ``[type, exact, boundary, ..., spurious, spurious in sentences without entities]`` from the
    ``errors_*`` counts of a metrics dict (:func:`medner.metrics.error_counts`)."""
    return [[f"{t} ({ENTITY_NAMES[t]})", *(str(int(metrics[f"errors_{c}_{t}"])) for c in ERROR_CATEGORIES),
             str(int(metrics[f"errors_spurious_in_empty_{t}"]))] for t in ENTITY_TYPES]


ERROR_HEADERS = [*(c.replace("_", " ") for c in ERROR_CATEGORIES), "spurious, sentence without entities"]


def error_breakdown_section(
    card: Any, metrics: Mapping[str, float], sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]],
) -> None:
    """The error breakdown of a card: counts per type, then example sentences per category."""
    from metaflow.cards import Markdown, Table

    breakdown = error_breakdown([s.labels for s in sentences], predictions, [s.tokens for s in sentences])
    card.append(Markdown(
        "## Where the errors are (test)\n\nEach gold entity is *exact*, a *boundary* error (same type, other words), "
        "*wrong type* (same words), *boundary and type*, or *missed*; a prediction overlapping no gold entity is "
        "*spurious* (last column: in sentences with no gold entity at all)."))
    card.append(Table(error_count_rows(metrics), headers=["entities", *ERROR_HEADERS]))
    rows = [[category.replace("_", " "), example["gold"], example["predicted"]]
            for category, examples in breakdown["examples"].items() for example in examples]
    card.append(Table(rows or [["-", "-", "-"]], headers=["error", "gold", "predicted"]))


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
    error_breakdown_section(card, metrics, test, predictions)
    card.append(Markdown("## Configuration"))
    card.append(Table([[k, str(v)] for k, v in config.items()], headers=["parameter", "value"]))


def mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± sd`` of several runs' values (just the value for one run)."""
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "-"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def group_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Result rows grouped by candidate name (a candidate run with several seeds has one row per seed)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    return groups


def experiment_chart(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """Dev and test entity F1 per candidate (mean over seeds, the bars' whiskers one sd), side by side."""
    import numpy as np

    fig, ax = new_figure(max(6, 1.4 * len(groups)), 3.5)
    x = np.arange(len(groups))
    for offset, split, color in ((-0.2, "dev", "tab:gray"), (0.2, "test", "tab:blue")):
        values = [[r[split]["entity_f1"] for r in runs] for runs in groups.values()]
        ax.bar(x + offset, [np.mean(v) for v in values], 0.4, yerr=[np.std(v, ddof=1) if len(v) > 1 else 0
                                                                     for v in values],
               label=f"{split} entity F1", color=color)
    ax.set_xticks(x, list(groups), rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("entity F1")
    ax.legend(fontsize=8)
    return fig


def experiment_card(card: Any, rows: Sequence[Mapping[str, Any]], challenger: str, data_version: str,
                    max_cost_ratio: float = 0.0, skipped: Mapping[str, str] | None = None) -> None:
    """Fill a Metaflow card with an experiment's comparison table (mean ± sd over each candidate's seeds) and
    chart; ``max_cost_ratio``: the serving budget the challenger was chosen within; ``skipped``: candidates not
    run, and why."""
    from metaflow.cards import Image, Markdown, Table

    groups = dict(sorted(group_rows(rows).items(),
                         key=lambda item: -statistics.mean(r["dev"]["entity_f1"] for r in item[1])))

    def cell(runs: Sequence[Mapping[str, Any]], split: str, key: str) -> str:
        return mean_sd([r[split][key] for r in runs])

    card.append(Markdown(
        f"# Challenger: {challenger}\n\n{len(groups)} candidates ({len(rows)} runs) on data `{data_version}`, "
        "ranked by mean dev entity F1 over their seeds (the selection criterion); test scores are reported, "
        "never used to choose."
        + (f" The challenger is the best within the serving budget: at most {max_cost_ratio:g}x the latency of "
           "the fastest servable candidate." if max_cost_ratio else "")
        + "".join(f"\n\nNot run: **{name}**: {reason}" for name, reason in (skipped or {}).items())))
    card.append(Table([[
        name + (" (challenger)" if name == challenger else ""), runs[0]["kind"], str(len(runs)),
        cell(runs, "dev", "entity_f1"), cell(runs, "test", "entity_f1"), cell(runs, "test", "entity_f1_D"),
        cell(runs, "test", "entity_f1_T"), cell(runs, "test", "entity_f1_relaxed"),
        cell(runs, "test", "token_weighted_f1"), f"{max(r['train_seconds'] for r in runs):.0f}",
        f"{runs[0]['model_mb']:.1f}", f"{statistics.median(r['latency_ms'] for r in runs):.1f}"]
        for name, runs in groups.items()], headers=[
        "candidate", "kind", "runs", "dev F1", "test F1", "test F1 D", "test F1 T", "test relaxed F1",
        "test token-weighted F1", "train s (max)", "model MB", "latency ms/sentence"]))
    card.append(Image.from_matplotlib(experiment_chart(groups)))
    card.append(Markdown("## Where the errors are (dev, both types, mean over runs)\n\nGold entities exact, with a "
                         "boundary error, the wrong type, both, or missed; predictions overlapping no gold entity "
                         "(spurious)."))

    def errors(runs: Sequence[Mapping[str, Any]], category: str) -> str:
        return f"{statistics.mean(sum(r['dev'][f'errors_{category}_{t}'] for t in ENTITY_TYPES) for r in runs):.0f}"

    card.append(Table([[name, *(errors(runs, c) for c in (*ERROR_CATEGORIES, "spurious_in_empty"))]
                       for name, runs in groups.items()], headers=["candidate", *ERROR_HEADERS]))
    card.append(Markdown("## Parameters"))
    card.append(Table([[name, runs[0].get("lever", ""), ", ".join(
        f"{k}={v}" for k, v in runs[0]["params"].items() if k != "seed") or "defaults",
        ", ".join(str(r["params"]["seed"]) for r in runs if "seed" in r["params"]) or "-"]
        for name, runs in groups.items()], headers=["candidate", "lever", "parameters", "seeds"]))
