"""Model-quality monitoring: entity F1 of the served model on annotated samples of live traffic.

Annotated samples (BeHealthy ``_sent``/``_label`` pairs or ``.jsonl``, read and validated by
:func:`medner.data.read_annotations`) are sent through the served model (in-process on the repository's
champion version with :class:`clients.local.LocalNerModel`, or a live server with
:class:`clients.ner_client.NerClient`), scored with :func:`medner.metrics.evaluate` like the export gate
scores the test split, and compared with the champion's test entity F1 from its lineage
(``ner_encoder/<N>/lineage.json``, ``metrics_fp32.entity_f1``). A drop beyond the threshold is treated
like critical drift. Reports hold scores and counts only, never text.

The other source of truth is the review store (``review/``): :func:`review_quality` measures the champion version
against reviewers' final spans on the random share of reviewed notes (the unbiased sample) and applies the same
threshold, so reviews are a live accuracy measure without separate annotation work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from medner.config import DEFAULT_REPOSITORY, PRODUCTION_BRANCH
from medner.data import read_annotations
from medner.registry import champion, lineage
from medner.spans import predicted_labels
from monitoring.policy import DEFAULT_QUALITY_DROP, quality_level

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

# Small samples swing: entity F1 on the first couple of hundred BeHealthy test sentences differs by points from
# F1 on the whole split, so a verdict needs a sample of a few hundred sentences at least.
MIN_SENTENCES = 300


def champion_f1(repository: Path) -> tuple[int, float]:
    """The champion version (:func:`medner.registry.champion`) and its test entity F1 (fp32) from lineage."""

    version = champion(Path(repository))
    if version is None:
        raise FileNotFoundError(f"{repository}: no model versions (run `medner export`)")
    f1 = (lineage(Path(repository), version).get("metrics_fp32") or {}).get("entity_f1")
    if f1 is None:
        raise ValueError(f"{repository}: version {version} has no metrics_fp32.entity_f1 in its lineage")
    return version, float(f1)


def check_quality(paths: Sequence[str | Path], repository: Path = Path(DEFAULT_REPOSITORY), *, url: str | None = None,
                  model: str = "ner", max_drop: float = DEFAULT_QUALITY_DROP, min_sentences: int = MIN_SENTENCES
                  ) -> dict[str, Any]:
    """Score the served model on annotated files; ``level`` is ``critical`` when entity F1 is more than
    ``max_drop`` below the champion's, ``none`` (with ``too_few``) under ``min_sentences`` sentences.
    Without ``url`` the champion version runs in-process."""
    from medner.metrics import evaluate

    sentences = [s for path in paths for s in read_annotations(path)]
    version, best = champion_f1(repository)
    if url:
        from clients.ner_client import NerClient

        with NerClient(url, model=model) as client:
            predictions = predicted_labels([s.tokens for s in sentences], client.extract)
    else:
        from clients.local import LocalNerModel

        predictions = predicted_labels([s.tokens for s in sentences],
                                       LocalNerModel(Path(repository), model, version=version).extract)
    metrics = evaluate([s.labels for s in sentences], predictions)
    f1 = metrics["entity_f1"]
    too_few = len(sentences) < min_sentences
    return {
        "level": "none" if too_few else quality_level(f1, best, max_drop), "too_few": too_few,
        "entity_f1": round(f1, 4),
        "champion_entity_f1": round(best, 4), "drop": round(best - f1, 4), "max_drop": max_drop,
        "version": version, "sentences": len(sentences), "files": [str(p) for p in paths],
        "scores": {"entity_f1": f1, "entity_f1_D": metrics["entity_f1_D"], "entity_f1_T": metrics["entity_f1_T"]},
    }


def review_quality(db: str | None, repository: Path = Path(DEFAULT_REPOSITORY), *, model: str = "ner",
                   max_drop: float = DEFAULT_QUALITY_DROP, min_sentences: int = MIN_SENTENCES,
                   since: datetime | None = None) -> dict[str, Any]:
    """Precision, recall and entity F1 of the champion version against reviewers' final spans (random-share
    notes reviewed since ``since``; :func:`review.service.quality_by_version`) with the weekly rows; ``level`` as
    in :func:`check_quality`, ``none`` (with ``too_few``) under ``min_sentences`` reviewed notes."""
    from review.service import quality_by_version, quality_totals
    from review.store import Store

    version, best = champion_f1(repository)
    store = Store(db)
    try:
        with store.session() as session:
            weeks = [r for r in quality_by_version(session, since) if r["model"] == model and
                     r["model_version"] == version]
    finally:
        store.close()
    totals = quality_totals(weeks)
    f1 = totals["entity_f1"] or 0.0
    too_few = totals["notes"] < min_sentences or totals["entity_f1"] is None
    return {
        "level": "none" if too_few else quality_level(f1, best, max_drop), "too_few": too_few, "source": "reviews",
        "entity_f1": round(f1, 4), "precision": totals["precision"], "recall": totals["recall"],
        "champion_entity_f1": round(best, 4), "drop": round(best - f1, 4), "max_drop": max_drop,
        "version": version, "sentences": totals["notes"], "weeks": weeks,
        "scores": {"entity_f1": f1},
    }


def review_quality_by_group(db: str | None, repository: Path = Path(DEFAULT_REPOSITORY), *,
                            min_sentences: int = MIN_SENTENCES) -> dict[str, dict[str, Any]]:
    """The champion's entity F1 from reviews per group of notes (:func:`review.service.quality_by_group`, random
    share); ``too_few`` (no verdict on it) under ``min_sentences`` reviewed notes."""
    from review.service import quality_by_group
    from review.store import Store

    version, _ = champion_f1(repository)
    store = Store(db)
    try:
        with store.session() as session:
            rows = quality_by_group(session, model_version=version)
    finally:
        store.close()
    return {r["group"]: {"entity_f1": r["entity_f1"], "notes": r["notes"], "version": version,
                         "too_few": r["notes"] < min_sentences or r["entity_f1"] is None} for r in rows}


def check_quality_and_act(paths: Sequence[str | Path], *, repository: Path = Path(DEFAULT_REPOSITORY),
                          url: str | None = None, model: str = "ner", max_drop: float = DEFAULT_QUALITY_DROP,
                          min_sentences: int = MIN_SENTENCES, trigger: bool = False, backend: str = "local",
                          log: str = "", parameters: dict[str, dict] | None = None,
                          endpoint_url: str | None = None, reviews: str | None = None,
                          branch: str = PRODUCTION_BRANCH) -> dict[str, Any]:
    """:func:`check_quality` of annotated files, or with ``reviews`` (a review database URL)
    :func:`review_quality`; with ``trigger``, act on the report (a drop starts ExperimentFlow and alerts, see
    :func:`monitoring.triggers.act`, on the @project ``branch``) and add the decision to it under ``decision``."""
    from monitoring.triggers import act, backend_options

    if (reviews is None) == (not paths):
        raise ValueError("give annotated files or a review database (--reviews), one of the two")
    if reviews is not None:
        report = review_quality(reviews, repository, model=model, max_drop=max_drop, min_sentences=min_sentences)
    else:
        report = check_quality(paths, repository=repository, url=url, model=model, max_drop=max_drop,
                               min_sentences=min_sentences)
    if trigger:
        report["decision"] = act(report, backend, log, reason=quality_reason(report),
                                 parameters=parameters or {},
                                 backend_options=backend_options(backend, endpoint_url, branch))
    return report


def quality_reason(report: dict[str, Any]) -> str:
    sample = "reviewed notes (random share)" if report.get("source") == "reviews" else "annotated live sentences"
    return (f"quality: entity F1 {report['entity_f1']:.4f} on {report['sentences']} {sample} vs "
            f"champion v{report['version']} {report['champion_entity_f1']:.4f} (drop {report['drop']:.4f}, "
            f"threshold {report['max_drop']})")
