"""The MonitorFlow card: the drift level, per-feature scores (table, and bar charts of distances and mean shifts) and
whylogs' HTML report; with --by-group, each group against the others (a table and small multiples)."""

from __future__ import annotations

import html as html_lib
import io
from collections.abc import Mapping
from typing import Any

LEVEL_COLOURS = {"none": "#2e7d32", "warning": "#f9a825", "critical": "#c62828"}


def scores_chart(scores: Mapping[str, float], warning: float, critical: float = 0.0,
                 mean_shifts: Mapping[str, float] | None = None, means_beyond: Mapping[str, float] | None = None
                 ) -> bytes:
    """Horizontal bar charts (PNG), readable offline, unlike whylogs' report (its scripts come from CDNs): per-feature
    Hellinger distances with the window's warning bound (and a fixed critical bound, when set); with ``mean_shifts``,
    beside them each feature's mean shift (reference standard deviations), those in ``means_beyond`` coloured as a
    warning and marked at their own bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shifts, beyond = mean_shifts or {}, means_beyond or {}
    names = sorted(scores.keys() | shifts.keys(), key=lambda name: scores.get(name, 0.0))
    fig, axes = plt.subplots(1, 2 if shifts else 1, figsize=(11 if shifts else 7, 0.35 * len(names) + 1.2),
                             sharey=True, squeeze=False)
    distances = axes[0][0]
    distances.barh(names, [scores.get(n, 0.0) for n in names],
                   color=[LEVEL_COLOURS["critical" if critical and scores.get(n, 0.0) >= critical else "warning"
                                        if scores.get(n, 0.0) >= warning else "none"] for n in names])
    for name, value in (("warning", warning), ("critical", critical)):
        if value:
            distances.axvline(value, ls="--", lw=1, color=LEVEL_COLOURS[name],
                              label=f"{name} bound (combined score)")
    distances.set_xlim(0, 1)
    distances.set_xlabel("Hellinger distance to the reference")
    distances.legend(fontsize=7, loc="lower right")
    if shifts:
        means = axes[0][1]
        means.barh(names, [shifts.get(n, 0.0) for n in names],
                   color=[LEVEL_COLOURS["warning" if n in beyond else "none"] for n in names])
        for name, bound in beyond.items():  # a feature past its bound has a mean shift: a row of the chart
            means.plot([-bound, bound], [name, name], "|", markersize=12, color="black")
        means.axvline(0, lw=0.8, color="black")
        means.set_xlabel("mean shift (reference sd); |: its own bound, once beyond")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def embedded_html(page: str, height: int = 1150) -> str:
    """``page`` in an iframe on one line: a Markdown card component passes raw HTML through, but a blank
    line would end the HTML block, so newlines inside the srcdoc attribute become character references."""
    source = html_lib.escape(page).replace("\n", "&#10;")
    return f'<iframe srcdoc="{source}" width="100%" height="{height}" style="border:0"></iframe>'


def drift_card(card: Any, report: Mapping[str, Any], page: str | None) -> None:
    """Fill a Metaflow blank card (``current.card``) with a drift report (``DriftReport.to_dict()``) and
    whylogs' HTML drift report ``page`` (None when the window had no profile)."""
    from metaflow.cards import Image, Markdown, Table

    level, counts, thresholds = report["level"], report["counts"], report.get("thresholds") or {}
    colour = LEVEL_COLOURS.get(level, "black")
    card.append(Markdown(f"# Drift: <span style=\"color:{colour}\">{level.upper()}</span>"))
    card.append(Markdown(
        f"Window {report['window_start']} .. {report['window_end']}: {counts.get('notes', 0)} notes in "
        f"{counts.get('profiles', 0)} profile(s); reference {counts.get('reference_notes', 0)} notes. "
        f"Combined score {report.get('combined') if report.get('combined') is not None else '-'} "
        f"(warning from {report.get('warning_bound') or '-'} at this window's size). {report.get('reason', '')}"))
    estimate = report.get("estimate")
    if estimate:
        card.append(Table([[f"{estimate[k]:.3f}" for k in ("entity_f1", "precision", "recall", "reference_f1",
                                                          "drop")] + [thresholds.get("critical_drop", "-")]],
                          headers=["estimated entity F1", "precision", "recall", "on the reference", "drop",
                                   "critical drop"]))
    scores = report.get("scores") or {}
    if scores:
        shifts = report.get("mean_shifts") or {}  # with the features scored by their mean alone
        rows = [[name, f"{scores[name]:.3f}" if name in scores else "-", f"{shifts[name]:+.3f}" if name in shifts
                 else "-"] for name in sorted(scores.keys() | shifts.keys(), key=lambda name: -scores.get(name, 0.0))]
        card.append(Table(rows, headers=["feature", "Hellinger distance", "mean shift (reference sd)"]))
        card.append(Image(scores_chart(scores, report.get("warning_bound") or 1.0, thresholds.get("critical", 0.0),
                                       shifts, report.get("means_beyond")), label="per-feature drift"))
    if page:
        card.append(Markdown("## whylogs drift report (loads its scripts from public CDNs)"))
        card.append(Markdown(embedded_html(page)))


def groups_chart(groups: list[Mapping[str, Any]]) -> bytes:
    """Small multiples (PNG): per group with a verdict, its per-feature distances to the other groups and its bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = [g for g in groups if g["against_rest"].get("scores")]
    fig, axes = plt.subplots(1, max(len(judged), 1), figsize=(2.6 * max(len(judged), 1), 3.6), sharey=True,
                             squeeze=False)
    names = sorted({name for g in judged for name in g["against_rest"]["scores"]})
    for axis, g in zip(axes[0], judged):
        scores, bound = g["against_rest"]["scores"], g["against_rest"]["bound"]
        axis.barh(names, [scores.get(n, 0.0) for n in names], color=LEVEL_COLOURS.get(g["level"], "grey"))
        axis.axvline(bound, ls="--", lw=1, color="black")
        axis.set_title(f"{g['group']} ({g['notes']} notes)", fontsize=8)
        axis.set_xlim(0, 1)
        axis.tick_params(labelsize=7)
    fig.supxlabel("Hellinger distance to the other groups (dashed: the combined score's bound)", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def groups_card(card: Any, report: Mapping[str, Any]) -> None:
    """Append a group check (``GroupsReport.to_dict()``) to a card: a row per group, then the small multiples."""
    from metaflow.cards import Image, Markdown, Table

    card.append(Markdown(f"## Groups of notes against each other: {report['level'].upper()}"))
    card.append(Table([[g["group"], g["notes"], g["verdict"], g["level"], g["against_rest"].get("combined", "-"),
                        g["against_rest"].get("bound", "-"), (g["estimate"] or {}).get("entity_f1", "-"),
                        (g["quality"] or {}).get("entity_f1", "-")] for g in report["groups"]],
                      headers=["group", "notes", "verdict", "level", "vs rest", "bound", "estimated F1",
                               "reviewed F1"]))
    card.append(Image(groups_chart(report["groups"]), label="each group against the others"))
