"""``modelyard logs search`` on a real SQLite request log; ``modelyard top``'s summary from real metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.monitoring.metrics import EngineCollector, Metrics, Outcome
from modelyard.monitoring.requestlog.records import RequestRecord
from modelyard.monitoring.requestlog.writer import RequestLogWriter
from modelyard.monitoring.top import _quantile, parse, summarize
from modelyard.settings import RequestLogSettings
from modelyard.store.db import create_db_engine, migrate


def _rec(rid: str, minutes_ago: float, **kw: object) -> RequestRecord:
    base: dict[str, object] = dict(
        request_id=rid,
        created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        tenant="acme",
        model="m1",
        model_requested="m1",
        endpoint="chat/completions",
        stream=True,
        status=200,
        latency_ms=40.0,
        response="hi there",
        ttft_ms=5.0,
        finish_reason="stop",
    )
    base.update(kw)
    return RequestRecord(**base)  # type: ignore[arg-type]


def test_logs_search(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_db_engine(url)
    migrate(engine)
    RequestLogWriter(engine, RequestLogSettings()).write(
        [_rec("a", 1), _rec("b", 2, tenant="zeta"), _rec("c", 3, model="m2"), _rec("d", 300)]
    )
    engine.dispose()
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "logs",
            "search",
            "--database-url",
            url,
            "--model",
            "m1",
            "--tenant",
            "acme",
            "--since",
            "1h",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["request_id"] for line in out.output.splitlines()] == ["a"]
    table = runner.invoke(app, ["logs", "search", "--database-url", url, "--since", "1h"])
    assert table.exit_code == 0 and "zeta" in table.output and "hi there" in table.output
    bad = runner.invoke(app, ["logs", "search", "--database-url", url, "--since", "last week"])
    assert bad.exit_code == 1 and "since=" in bad.output


def test_top_summary_from_real_exposition() -> None:
    m = Metrics()
    m.registry.register(
        EngineCollector(
            lambda: [
                (
                    "m1",
                    {
                        "num_running": 3,
                        "num_waiting": 2,
                        "kv_cache_usage": 0.5,
                        "prefix_cache_queries": 10,
                        "prefix_cache_hits": 4,
                        "prompt_tokens_total": 1,
                        "generation_tokens_total": 2,
                        "num_preemptions": 0,
                    },
                )
            ]
        )
    )
    m.record(Outcome("m1", "acme", "chat/completions", 200, ttft_s=0.004, completion_tokens=10, e2e_s=0.1))
    prev = parse(m.exposition().decode())
    for ttft in (0.015, 0.03, 0.03):
        m.record(Outcome("m1", "acme", "chat/completions", 200, ttft_s=ttft, completion_tokens=10, e2e_s=0.1))
    m.record(Outcome("m2", "acme", "chat/completions", 502, cause="upstream", e2e_s=0.1))
    cur = parse(m.exposition().decode())
    rows = {r.model: r for r in summarize(cur, prev, 2.0)}
    assert rows["m1"].requests == 4 and rows["m1"].req_per_s == 1.5 and rows["m1"].tokens_per_s == 15
    # the three new TTFTs fall in (0.01, 0.02] and (0.02, 0.04]: p50 interpolates inside the second bucket
    assert rows["m1"].ttft_p50_s == pytest.approx(0.02 + 0.02 * (1.5 - 1) / 2)
    assert rows["m1"].running == 3 and rows["m1"].waiting == 2 and rows["m1"].kv_usage == 0.5
    assert rows["m2"].errors == 1 and rows["m2"].running is None and rows["m2"].ttft_p50_s is None


def test_quantile_matches_prometheus() -> None:
    assert _quantile(0.5, {0.1: 0, 0.2: 10, float("inf"): 10}) == pytest.approx(0.15)
    assert _quantile(0.99, {0.1: 0, float("inf"): 5}) == 0.1
    assert _quantile(0.5, {}) is None
