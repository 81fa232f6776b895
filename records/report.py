"""ExtractFlow's card: the run's totals, entities per type, and each shard's throughput."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

COUNTS = ("notes", "extracted", "skipped", "errors")


def totals(shards: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The shards' counts summed; ``notes_per_second``: the notes written over the shards' summed seconds."""
    summed: dict[str, Any] = {key: sum(s[key] for s in shards) for key in COUNTS}
    summed["entities"] = dict(sum((Counter(s["entities"]) for s in shards), Counter()))
    seconds = sum(s["seconds"] for s in shards)
    summed["notes_per_second"] = round((summed["extracted"] + summed["errors"]) / seconds, 1) if seconds else 0.0
    return summed


def throughput_chart(shards: Sequence[Mapping[str, Any]]) -> Any:
    from medner.report import new_figure

    figure, axes = new_figure(6, 3)
    axes.bar([str(s["shard"]) for s in shards], [s["notes_per_second"] for s in shards], color="#4c72b0")
    axes.set_xlabel("shard")
    axes.set_ylabel("notes / s")
    axes.set_title("throughput per shard")
    return figure


def extraction_card(card: Any, shards: Sequence[Mapping[str, Any]], model: str, version: int) -> None:
    from metaflow.cards import Image, Markdown, Table

    summed = totals(shards)
    card.append(Markdown(f"# Records: {summed['notes']} notes\nmodel `{model}` version {version}"))
    card.append(Table([[summed[k] for k in COUNTS] + [summed["notes_per_second"]]],
                      headers=[*COUNTS, "notes/s per worker"]))
    card.append(Markdown("## Entities per type"))
    card.append(Table([[label, count] for label, count in sorted(summed["entities"].items())],
                      headers=["label", "entities"]))
    card.append(Markdown("## Shards"))
    card.append(Table([[s["shard"], s["notes"], s["extracted"], s["skipped"], s["errors"], s["notes_per_second"],
                        round(s["write_seconds"], 2), " → ".join(str(r) for r in s["rss_mb"])] for s in shards],
                      headers=["shard", "notes", "extracted", "skipped", "errors", "notes/s", "store s", "RSS MB"]))
    card.append(Image.from_matplotlib(throughput_chart(shards)))
