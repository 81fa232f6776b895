"""Drift and quality as Prometheus gauges, from the decision log: what monitoring last measured, where Prometheus
can scrape it (``medner monitor metrics``), beside Triton's own ``/metrics``. The alert rules
(``deploy/prometheus/medner-rules.yml``) fire on these gauges; the Grafana dashboard
(``deploy/grafana/medner.json``) draws them with Triton's request rate, latency and failures.

Gauges (numbers only, never note text), each from the latest record of its kind in the log:

* ``medner_drift_level`` (0 none, 1 warning, 2 critical), ``medner_drift_combined``, ``medner_drift_score`` and
  ``medner_drift_mean_shift`` per feature (:mod:`monitoring.drift`), ``medner_drift_window_end_seconds``, and
  ``medner_estimated_entity_f1`` (the served model's F1 estimated from its confidences,
  :mod:`monitoring.estimation`): the latest drift check;
* ``medner_quality_level`` and ``medner_quality_entity_f1``: the latest quality check (annotated samples or
  reviews);
* per ``group`` (:mod:`monitoring.bias`, the latest group check): ``medner_group_level`` (0 in line, 1 diverging from
  the other groups, 2 diverging and estimated worse; no sample without a verdict), ``medner_group_notes``,
  ``medner_group_drift_combined`` ``against`` the ``rest`` of the window or the ``reference``,
  ``medner_group_estimated_entity_f1`` and ``medner_group_reviewed_entity_f1`` (from reviews, with ``--review-db``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from monitoring.policy import LEVELS, NO_VERDICT, DecisionLog, open_log, parse_time

NOT_FEATURES = ("combined", "estimated_entity_f1")  # a drift record's scores that are not a feature's distance
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text exposition format
DEFAULT_METRICS_PORT = 9108


def _gauge(name: str, help_text: str, samples: Sequence[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        rendered = ",".join(f'{key}="{text}"' for key, text in sorted(labels.items()))
        lines.append(f"{name}{{{rendered}}} {float(value)!r}" if labels else f"{name} {float(value)!r}")
    return lines


def metrics_text(records: Sequence[dict[str, Any]]) -> str:
    """The gauges of the latest drift and quality records among ``records`` (decision log records, oldest
    first), in Prometheus' text format; no gauge for a kind never recorded."""
    drift = next((r for r in reversed(records) if "combined" in (r.get("scores") or {})), None)
    quality = next((r for r in reversed(records) if "entity_f1" in (r.get("scores") or {})), None)
    lines: list[str] = []
    if drift is not None:
        scores = drift["scores"]
        lines += _gauge("medner_drift_level", "Drift level of the latest window: 0 none, 1 warning, 2 critical.",
                        [({}, LEVELS.index(drift["level"]))])
        lines += _gauge("medner_drift_combined", "Combined drift score of the latest window (mean of the top "
                        "per-feature Hellinger distances).", [({}, scores["combined"])])
        lines += _gauge("medner_drift_score", "Hellinger distance of one feature in the latest window.",
                        [({"feature": k}, v) for k, v in sorted(scores.items()) if k not in NOT_FEATURES])
        if drift.get("mean_shifts"):
            lines += _gauge("medner_drift_mean_shift", "Mean of one feature in the latest window minus the "
                            "reference's, in the reference's standard deviations.",
                            [({"feature": k}, v) for k, v in sorted(drift["mean_shifts"].items())])
        if "estimated_entity_f1" in scores:
            lines += _gauge("medner_estimated_entity_f1", "Entity F1 of the served model on the latest window, "
                            "estimated from its confidences (no labels).", [({}, scores["estimated_entity_f1"])])
        if drift.get("window_end"):
            end = parse_time(drift["window_end"])
            lines += _gauge("medner_drift_window_end_seconds", "End of the latest drift window (Unix time).",
                            [({}, end.timestamp())])
    groups = next((r["groups"] for r in reversed(records) if r.get("kind") == "groups"), None)
    if groups is not None:
        lines += _group_gauges(groups)
    if quality is not None:
        lines += _gauge("medner_quality_level", "Quality level of the latest check: 0 none, 2 critical (a drop "
                        "below the champion's test F1).", [({}, LEVELS.index(quality["level"]))])
        lines += _gauge("medner_quality_entity_f1", "Entity F1 of the served model in the latest quality check.",
                        [({}, quality["scores"]["entity_f1"])])
    return "\n".join(lines) + "\n"


def _group_gauges(groups: dict[str, dict[str, Any]]) -> list[str]:
    judged = {name: g for name, g in sorted(groups.items()) if g["verdict"] != NO_VERDICT}
    lines = _gauge("medner_group_level", "A group of notes against the other groups of the latest window: 0 in line, "
                   "1 diverging, 2 diverging and estimated worse.",
                   [({"group": name}, LEVELS.index(g["level"])) for name, g in judged.items()])
    lines += _gauge("medner_group_notes", "Notes of a group in the latest group check.",
                    [({"group": name}, g["notes"]) for name, g in sorted(groups.items())])
    lines += _gauge("medner_group_drift_combined", "Combined drift score of a group against the rest of the window "
                    "or the reference.",
                    [({"group": name, "against": against}, g[f"combined_vs_{against}"])
                     for name, g in judged.items() for against in ("rest", "reference")
                     if g.get(f"combined_vs_{against}") is not None])
    for kind, how in (("estimated", "estimated from its confidences"), ("reviewed", "from reviews (random share)")):
        lines += _gauge(f"medner_group_{kind}_entity_f1", f"Entity F1 of the served model on a group's notes, {how}.",
                        [({"group": name}, g[f"{kind}_entity_f1"]) for name, g in sorted(groups.items())
                         if g.get(f"{kind}_entity_f1") is not None])
    return lines


class _Handler(BaseHTTPRequestHandler):
    log: DecisionLog

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = metrics_text(self.log.read()).encode()  # read at every scrape: what monitoring wrote last
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # no access log: scrapes every few seconds
        pass


def metrics_server(log: str | Path | DecisionLog, host: str = "127.0.0.1", port: int = DEFAULT_METRICS_PORT
                   ) -> ThreadingHTTPServer:
    """An HTTP server (not started: ``serve_forever``) answering ``GET /metrics`` with :func:`metrics_text` of
    the decision log ``log`` (a file or ``s3://``)."""
    handler = type("MetricsHandler", (_Handler,), {"log": open_log(log)})
    return ThreadingHTTPServer((host, port), handler)


def serve_metrics_in_background(log: str | Path | DecisionLog, host: str = "127.0.0.1", port: int = 0
                                ) -> ThreadingHTTPServer:
    """:func:`metrics_server` serving from a daemon thread (``shutdown()`` stops it); port 0: a free one."""
    server = metrics_server(log, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
