"""Smoke test of ``bench/queue.py`` on the tiny model: every section runs and the JSON has its figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.queue import main

from engine.helpers import write_tiny_llama

pytestmark = pytest.mark.redis


def test_queue_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny_dir = write_tiny_llama(tmp_path / "tiny")
    report = main(
        ["--source", str(tiny_dir), "--requests", "3", "--max-tokens", "4",
         "--throughput-requests", "4", "--concurrency", "2", "--workers", "1"]
    )  # fmt: skip
    lat = report["latency"]
    for path in ("direct", "memory_queue", "redis_queue"):
        assert lat[path]["e2e"]["p50_ms"] > 0 and lat[path]["first_payload"]["p99_ms"] > 0
    assert "p99_ms" in lat["redis_queue_added"]["e2e"]
    (run,) = report["throughput"]
    assert run["workers"] == 1 and run["requests_per_s"] > 0 and run["completion_tokens_per_s"] > 0
    assert '"throughput_ratio_vs_first"' in capsys.readouterr().out
