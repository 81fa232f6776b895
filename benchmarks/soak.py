"""Load and soak: a bounded load on a Triton server on 127.0.0.1, with latency and memory over time.

    python benchmarks/soak.py --duration 600 --concurrency 16 [--requests N] [--url HOST:PORT --pid PID]

``concurrency`` requests stay in flight (``AsyncNerClient``, ``--batch`` BeHealthy test sentences per request,
no client retries, so every server failure counts); the run stops by itself after ``--duration`` seconds or
``--requests`` requests, whichever comes first. Without ``--url`` it starts its own tritonserver on free
127.0.0.1 ports serving ``--repository`` (the latest version of each model) and stops it afterwards.
Every ``--interval`` seconds it records the latency percentiles (p50/p95/p99) of the requests finished in
that interval, the failed requests, and the resident memory of tritonserver plus its python-backend stubs
(psutil; with ``--url``, pass ``--pid`` to measure it). RSS growth is the last sample against the first
one after ``--warmup`` seconds. Writes benchmarks/results/soak.{md,json,png} (``--out``), stamped with the
hardware and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, load_notes, percentiles, process_rss_mb  # noqa: E402


@dataclass
class Interval:
    """What happened in one interval of the run (``t``: its end, seconds since the start)."""

    t: float
    requests: int
    failed: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rss_mb: float | None


@dataclass
class SoakResult:
    concurrency: int
    batch: int
    duration_s: float
    requests: int
    failed: int
    notes: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    warmup_s: float
    rss_start_mb: float | None  # first sample after warm-up
    rss_end_mb: float | None
    rss_max_mb: float | None
    rss_growth_pct: float | None
    errors: dict[str, int] = field(default_factory=dict)  # status -> count (messages never carry note text)
    load_average: tuple[float, ...] = ()  # of the machine at the end (1, 5, 15 min): other work skews latency
    intervals: list[Interval] = field(default_factory=list)


def _percentiles(latencies: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    if not latencies:
        return None, None, None
    return tuple(round(value, 2) for value in percentiles(latencies).values())


async def soak(url: str, notes: Sequence[str], duration: float, requests: int | None = None, concurrency: int = 16,
               batch: int = 8, interval: float = 1.0, warmup: float = 10.0, pid: int | None = None,
               model: str = "ner") -> SoakResult:
    """Keep ``concurrency`` requests of ``batch`` notes in flight until ``duration`` seconds or ``requests``
    requests have passed; sample latency, failures and server RSS every ``interval`` seconds."""
    from clients.ner_client import AsyncNerClient, NerRequestError

    payloads = [n.encode("utf-8") for n in notes]
    done: list[tuple[float, float, bool]] = []  # (finish time, latency, ok)
    errors: dict[str, int] = {}
    issued = 0
    start = time.monotonic()
    stop_at = start + duration

    async def worker(client: AsyncNerClient) -> None:
        nonlocal issued
        while time.monotonic() < stop_at and (requests is None or issued < requests):
            first = (issued * batch) % len(payloads)
            issued += 1
            part = [payloads[(first + k) % len(payloads)] for k in range(batch)]
            began = time.monotonic()
            try:
                await client.infer(part)
                ok = True
            except NerRequestError as err:
                ok = False
                errors[err.status] = errors.get(err.status, 0) + 1
            done.append((time.monotonic() - start, time.monotonic() - began, ok))

    samples: list[tuple[float, float | None]] = []

    async def sampler() -> None:
        while True:
            samples.append((time.monotonic() - start, process_rss_mb(pid)))
            await asyncio.sleep(interval)

    async with AsyncNerClient(url, model=model, retries=0, timeout=60.0) as client:
        watch = asyncio.create_task(sampler())
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        watch.cancel()
    elapsed = time.monotonic() - start
    samples.append((elapsed, process_rss_mb(pid)))

    intervals = []
    finished = np.array([d[0] for d in done]) if done else np.zeros(0)
    for k in range(int(np.ceil(elapsed / interval))):
        lo, hi = k * interval, (k + 1) * interval
        picked = [done[i] for i in np.flatnonzero((finished >= lo) & (finished < hi))]
        rss = [r for t, r in samples if lo <= t < hi and r is not None]
        intervals.append(Interval(round(min(hi, elapsed), 2), len(picked), sum(not ok for _, _, ok in picked),
                                  *_percentiles([lat for _, lat, ok in picked if ok]),
                                  round(max(rss), 1) if rss else None))
    after = [r for t, r in samples if t >= warmup and r is not None]
    rss_start, rss_end = (after[0], after[-1]) if after else (None, None)
    all_rss = [r for _, r in samples if r is not None]
    p50, p95, p99 = _percentiles([lat for _, lat, ok in done if ok])
    return SoakResult(
        concurrency=concurrency, batch=batch, duration_s=round(elapsed, 1), requests=len(done),
        failed=sum(not ok for _, _, ok in done), notes=len(done) * batch, p50_ms=p50 or 0.0, p95_ms=p95 or 0.0,
        p99_ms=p99 or 0.0, warmup_s=warmup,
        rss_start_mb=None if rss_start is None else round(rss_start, 1),
        rss_end_mb=None if rss_end is None else round(rss_end, 1),
        rss_max_mb=round(max(all_rss), 1) if all_rss else None,
        rss_growth_pct=None if not rss_start else round(100 * (rss_end - rss_start) / rss_start, 2),
        errors=errors, intervals=intervals, load_average=tuple(round(x, 2) for x in os.getloadavg()))


def write_report(result: SoakResult, out: Path, command: str, target: str) -> Path:
    """soak.md (summary, then the intervals), soak.json and soak.png (latency percentiles and RSS over time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
    t = [i.t for i in result.intervals]
    fig, (lat_ax, rss_ax) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        lat_ax.plot(t, [getattr(i, key) if getattr(i, key) is not None else np.nan for i in result.intervals],
                    label=key.split("_")[0])
    lat_ax.set_ylabel("latency per request (ms)")
    lat_ax.legend()
    lat_ax.set_title(f"soak: concurrency {result.concurrency} x {result.batch} notes, {result.requests} requests, "
                     f"{result.failed} failed")
    rss_ax.plot(t, [i.rss_mb if i.rss_mb is not None else np.nan for i in result.intervals], color="tab:red")
    rss_ax.axvline(result.warmup_s, color="grey", linestyle="--", label="end of warm-up")
    rss_ax.set_ylabel("server RSS (MB, tritonserver + stubs)")
    rss_ax.set_xlabel("seconds since start")
    rss_ax.legend()
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=100)
    plt.close(fig)

    def fmt(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value}{unit}"

    lines = [
        "# Soak test", "",
        f"- command: `{command}`",
        f"- target: {target}",
        f"- hardware: {hardware()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
        "| requests | notes | failed | duration (s) | req/s | p50 (ms) | p95 (ms) | p99 (ms) | RSS after warm-up (MB) "
        "| RSS end (MB) | RSS max (MB) | RSS growth |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {result.requests} | {result.notes} | {result.failed} | {result.duration_s} | "
        f"{result.requests / max(result.duration_s, 1e-9):.1f} | {result.p50_ms} | {result.p95_ms} | {result.p99_ms} | "
        f"{fmt(result.rss_start_mb)} | {fmt(result.rss_end_mb)} | {fmt(result.rss_max_mb)} | "
        f"{fmt(result.rss_growth_pct, '%')} |", "",
        f"Concurrency {result.concurrency}, {result.batch} notes per request, warm-up {result.warmup_s:g} s "
        "(RSS growth: last sample vs the first after warm-up). Errors by status: "
        f"{result.errors or 'none'}. Machine load average at the end (1/5/15 min): "
        f"{'/'.join(map(str, result.load_average)) or 'n/a'} on {os.cpu_count()} cores (other work on the machine "
        "shows in the latencies).", "",
        "![latency and RSS over time](soak.png)", "",
        "| t (s) | requests | failed | p50 (ms) | p95 (ms) | p99 (ms) | RSS (MB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {i.t} | {i.requests} | {i.failed} | {fmt(i.p50_ms)} | {fmt(i.p95_ms)} | {fmt(i.p99_ms)} | "
              f"{fmt(i.rss_mb)} |" for i in result.intervals]
    report = out / "soak.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> SoakResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (the run stops by itself)")
    parser.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="notes per request")
    parser.add_argument("--interval", type=float, default=None, help="seconds per sample (default duration/60, >=1)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default 10%% of duration, <= 60)")
    parser.add_argument("--model", default="ner")
    parser.add_argument("--url", default=None, help="an already running server (default: start one)")
    parser.add_argument("--pid", type=int, default=None, help="with --url: the tritonserver pid, for RSS")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--data-dir", default=None, help="BeHealthy folder (default $MEDNER_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    interval = args.interval or max(1.0, args.duration / 60)
    warmup = args.warmup if args.warmup is not None else min(60.0, 0.1 * args.duration)
    notes = load_notes(args.data_dir)
    command = "python benchmarks/soak.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def run(url: str, pid: int | None) -> SoakResult:
        return asyncio.run(soak(url, notes, args.duration, args.requests, args.concurrency, args.batch, interval,
                                warmup, pid, args.model))

    from benchmarks.serving import served_versions

    if args.url:
        result, target = run(args.url, args.pid), args.url
        served = served_versions(args.url, (args.model,))[args.model]
    else:
        from medner.triton import TritonServer

        with TritonServer.on_free_ports(args.repository) as server:
            result = run(server.grpc_url, server.process.pid)
            served = served_versions(server.grpc_url, (args.model,))[args.model]
        target = f"own tritonserver on 127.0.0.1 serving {args.repository}"
    target += (f" (model {args.model}, version(s) {', '.join(map(str, served))} as the server reported after the run)"
               if served else f" (model {args.model}; the server reported no version after the run)")
    report = write_report(result, args.out, command, target)
    print(report.read_text().split("![")[0])
    return result


if __name__ == "__main__":
    main()
