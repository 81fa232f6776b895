"""A short soak (benchmarks/soak.py against the session ``triton_server``): concurrency 16, no failed requests,
bounded server memory growth after warm-up, and the report with its plot written."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import main

pytestmark = pytest.mark.slow


def test_short_soak(triton_server, tiny_corpus: Path, tmp_path: Path) -> None:
    result = main(["--duration", "12", "--concurrency", "16", "--interval", "1", "--warmup", "4",
                   "--url", triton_server.grpc_url, "--pid", str(triton_server.process.pid),
                   "--data-dir", str(tiny_corpus), "--out", str(tmp_path)])
    assert result.failed == 0 and not result.errors
    assert result.requests > 16 and result.notes == result.requests * 8
    assert result.rss_start_mb and result.rss_start_mb > 100  # tritonserver + stubs were measured
    assert result.rss_growth_pct is not None and result.rss_growth_pct < 25  # generous: leaks grow without bound
    # the intervals partition the run: one a second up to its end, every request in exactly one
    assert [i.t for i in result.intervals[:-1]] == [float(k) for k in range(1, len(result.intervals))]
    assert result.intervals[-1].t == pytest.approx(result.duration_s, abs=0.06)  # rounded to 0.01 and to 0.1 s
    assert sum(i.requests for i in result.intervals) == result.requests
    assert sum(i.failed for i in result.intervals) == 0
    report = (tmp_path / "soak.md").read_text()
    lines = report.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| requests | notes | failed |")))
    summary = [cell.strip() for cell in lines[header + 2].strip("|").split("|")]
    assert summary[:3] == [str(result.requests), str(result.notes), "0"]  # the table says what was measured
    assert "cores" in report and "--duration 12" in report
    assert (tmp_path / "soak.png").stat().st_size > 10_000
