"""A short soak (benchmarks/soak.py against the session ``triton_server``): concurrency 16, no failed requests,
bounded server memory growth after warm-up, and the report with its plot written."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import main

pytestmark = pytest.mark.slow


def test_short_soak(triton_server, tiny_corpus: Path, tmp_path: Path) -> None:
    result = main(["--duration", "20", "--concurrency", "16", "--interval", "1", "--warmup", "5",
                   "--url", triton_server.grpc_url, "--pid", str(triton_server.process.pid),
                   "--data-dir", str(tiny_corpus), "--out", str(tmp_path)])
    assert result.failed == 0 and not result.errors
    assert result.requests > 16 and result.notes == result.requests * 8
    assert result.rss_start_mb and result.rss_start_mb > 100  # tritonserver + stubs were measured
    assert result.rss_growth_pct is not None and result.rss_growth_pct < 25  # generous: leaks grow without bound
    assert len(result.intervals) >= 15 and sum(i.requests for i in result.intervals) == result.requests
    report = (tmp_path / "soak.md").read_text()
    assert "| 0 |" in report and "cores" in report and "--duration 20" in report
    assert (tmp_path / "soak.png").stat().st_size > 10_000
