"""Evaluation metrics, all taking O/D/T label sequences (gold and predicted, one per sentence).

* entity-level micro P/R/F1 and per type: seqeval, strict IOB2 (an entity counts only when its
  boundaries and type match exactly);
* relaxed F1: an entity counts when it overlaps one of the other side with the same type
  (nervaluate's ``ent_type`` schema);
* token-level F1 weighted by support over O/D/T, for comparison with published numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from medner.labels import ENTITY_TYPES, FILE_LABELS, to_bio
from medner.spans import Span, labels_to_spans

Labels = Sequence[str]


def _check(gold: Sequence[Labels], pred: Sequence[Labels]) -> None:
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted sequences differ in number or length")


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_scores(gold: Sequence[Labels], pred: Sequence[Labels]) -> dict[str, float]:
    """Strict entity-level P/R/F1 (seqeval, IOB2), micro and per type, with supports."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    _check(gold, pred)
    report = classification_report(
        [to_bio(g) for g in gold],
        [to_bio(p) for p in pred],
        mode="strict",
        scheme=IOB2,
        output_dict=True,
        zero_division=0,
    )
    scores: dict[str, float] = {}
    for name, key in [("", "micro avg"), *((f"_{t}", t) for t in ENTITY_TYPES)]:
        row = report.get(key, {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
        scores[f"entity_precision{name}"] = float(row["precision"])
        scores[f"entity_recall{name}"] = float(row["recall"])
        scores[f"entity_f1{name}"] = float(row["f1-score"])
        scores[f"support{name}"] = int(row["support"])
    return scores


def _overlapping(span: Span, others: Sequence[Span]) -> bool:
    return any(o.label == span.label and o.start < span.end and span.start < o.end for o in others)


def relaxed_scores(gold: Sequence[Labels], pred: Sequence[Labels]) -> dict[str, float]:
    """Overlap P/R/F1: a predicted (gold) entity is matched if it overlaps a gold (predicted)
    entity of the same type."""
    _check(gold, pred)
    n_gold = n_pred = gold_hit = pred_hit = 0
    for g, p in zip(gold, pred):
        g_spans, p_spans = labels_to_spans(g), labels_to_spans(p)
        n_gold += len(g_spans)
        n_pred += len(p_spans)
        gold_hit += sum(_overlapping(s, p_spans) for s in g_spans)
        pred_hit += sum(_overlapping(s, g_spans) for s in p_spans)
    precision = pred_hit / n_pred if n_pred else 0.0
    recall = gold_hit / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "entity_precision_relaxed": precision,
        "entity_recall_relaxed": recall,
        "entity_f1_relaxed": f1,
    }


def token_weighted_f1(gold: Sequence[Labels], pred: Sequence[Labels]) -> float:
    """Token-level F1 over O/D/T, each label's F1 weighted by its gold support."""
    _check(gold, pred)
    flat = [(g, p) for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)]
    total = len(flat)
    weighted = 0.0
    for label in FILE_LABELS:
        tp = sum(g == label and p == label for g, p in flat)
        support = sum(g == label for g, _ in flat)
        n_pred = sum(p == label for _, p in flat)
        weighted += support * _prf(tp, n_pred, support)[2]
    return weighted / total if total else 0.0


def confusion_matrix(gold: Sequence[Labels], pred: Sequence[Labels]) -> dict[str, dict[str, int]]:
    """Token-level confusion counts: ``matrix[gold_label][predicted_label]``."""
    _check(gold, pred)
    matrix = {g: dict.fromkeys(FILE_LABELS, 0) for g in FILE_LABELS}
    for gs, ps in zip(gold, pred):
        for g, p in zip(gs, ps):
            matrix[g][p] += 1
    return matrix




# --- where the errors are ---------------------------------------------------------------------

#: Error categories, gold-entity-centred except ``spurious`` (a prediction overlapping no gold entity).
ERROR_CATEGORIES: tuple[str, ...] = ("exact", "boundary", "wrong_type", "boundary_and_type", "missed", "spurious")


def _classify(gold: Span, predicted: Sequence[Span]) -> str:
    overlapping = [p for p in predicted if p.start < gold.end and gold.start < p.end]
    if any(p == gold for p in overlapping):
        return "exact"
    if any((p.start, p.end) == (gold.start, gold.end) for p in overlapping):
        return "wrong_type"
    if any(p.label == gold.label for p in overlapping):
        return "boundary"
    return "boundary_and_type" if overlapping else "missed"


def error_breakdown(
    gold: Sequence[Labels], pred: Sequence[Labels], tokens: Sequence[Sequence[str]] | None = None,
    examples: int = 5,
) -> dict:
    """Count each gold entity as exact / boundary (same type, other boundaries) / wrong type (same
    boundaries) / boundary and type / missed, and each prediction overlapping no gold entity as
    spurious (also counted apart when its sentence has no gold entity at all), per type.

    Returns ``{"counts": {type: {category: n}}, "spurious_in_empty_sentences": {type: n},
    "examples": {category: [{"gold": ..., "predicted": ...}]}}``; examples need ``tokens``.
    """
    _check(gold, pred)
    counts = {t: dict.fromkeys(ERROR_CATEGORIES, 0) for t in ENTITY_TYPES}
    spurious_empty = dict.fromkeys(ENTITY_TYPES, 0)
    shown: dict[str, list[dict[str, str]]] = {c: [] for c in ERROR_CATEGORIES if c != "exact"}
    for i, (g, p) in enumerate(zip(gold, pred)):
        g_spans, p_spans = labels_to_spans(g), labels_to_spans(p)
        found = [(_classify(s, p_spans), s) for s in g_spans]
        found += [("spurious", s) for s in p_spans
                  if not any(s.start < o.end and o.start < s.end for o in g_spans)]
        for category, span in found:
            counts[span.label][category] += 1
            if category == "spurious" and not g_spans:
                spurious_empty[span.label] += 1
        for category in dict.fromkeys(c for c, _ in found if c != "exact"):  # one example per sentence
            if tokens is not None and len(shown[category]) < examples:
                shown[category].append({"gold": _show(tokens[i], g_spans), "predicted": _show(tokens[i], p_spans)})
    return {"counts": counts, "spurious_in_empty_sentences": spurious_empty, "examples": shown}


def _show(tokens: Sequence[str], spans: Sequence[Span]) -> str:
    return "; ".join(f"[{' '.join(tokens[s:e])}]{label}" for s, e, label in spans) or "-"


def error_counts(breakdown: dict) -> dict[str, int]:
    """An :func:`error_breakdown` as flat ``errors_<category>_<type>`` counts (with
    ``errors_spurious_in_empty_<type>``), the form the ``metrics`` dict carries."""
    counts = {f"errors_{c}_{t}": n for t, row in breakdown["counts"].items() for c, n in row.items()}
    counts.update({f"errors_spurious_in_empty_{t}": n for t, n in breakdown["spurious_in_empty_sentences"].items()})
    return counts


def evaluate(gold: Sequence[Labels], pred: Sequence[Labels]) -> dict[str, float]:
    """All headline metrics and error counts in one flat dict (the ``metrics`` artifact of a training run)."""
    return {
        **entity_scores(gold, pred),
        **relaxed_scores(gold, pred),
        "token_weighted_f1": token_weighted_f1(gold, pred),
        **error_counts(error_breakdown(gold, pred)),
    }
