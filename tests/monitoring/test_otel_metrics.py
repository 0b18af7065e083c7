"""Per-tenant OpenTelemetry metrics: exporter choice from the OTEL_* variables, the instruments and
their GenAI attributes (InMemoryMetricReader), and a real ``modelyard serve`` exporting over OTLP/HTTP
after a scripted mix of requests from two tenants: the exported values equal the usage ledger,
tenant by tenant."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from modelyard.monitoring.metrics import Outcome
from modelyard.monitoring.otel_metrics import OtelMetrics, build_meter_provider, choose_metrics_exporter
from modelyard.tenancy.records import Usage
from modelyard.tenancy.store import TenancyStore
from servers import MockUpstream, RemoteServer
from tenancy_support import SECRET, bootstrap_admin, tenancy_config

PRICES = {"remote-chat": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}}


def test_off_unless_the_otel_variables_say_so() -> None:
    assert choose_metrics_exporter({}) == "none"
    assert build_meter_provider({}) is None
    assert choose_metrics_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "otlp"
    assert (
        choose_metrics_exporter({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}) == "otlp"
    )
    assert (
        choose_metrics_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_METRICS_EXPORTER": "none"})
        == "none"
    )
    assert choose_metrics_exporter({"OTEL_METRICS_EXPORTER": "console"}) == "console"
    assert choose_metrics_exporter({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) == "none"


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = defaultdict(list)
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] += list(m.data.data_points)
    return out


def test_instruments_and_attributes() -> None:
    reader = InMemoryMetricReader()
    provider = build_meter_provider({}, readers=[reader])
    assert provider is not None
    otel = OtelMetrics(provider, lambda ref: ref if ref == "m" else "unknown")
    otel.record_usage(Usage("u1", "r1", "acme", "k1", "m", "chat/completions", "ok", 7, 3, cost=0.5))
    otel.record_usage(Usage("u2", "r2", None, None, "secret-name", "completions", "error_502", 2, 0))
    otel.record_outcome(
        Outcome(
            "m", "acme", "chat/completions", 200, ttft_s=0.1, e2e_s=0.5, completion_tokens=5, decode_s=0.4
        )
    )
    otel.record_outcome(Outcome("m", "beta", "chat/completions", 502, cause="upstream", e2e_s=0.2))
    pts = _points(reader)
    tokens = {
        (p.attributes["modelyard.tenant"], p.attributes["gen_ai.token.type"]): p
        for p in pts["gen_ai.client.token.usage"]
    }
    assert tokens["acme", "input"].sum == 7 and tokens["acme", "output"].sum == 3
    assert dict(tokens["acme", "input"].attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "modelyard.tenant": "acme",
        "gen_ai.token.type": "input",
    }
    anon = tokens["anonymous", "input"]
    assert anon.attributes["gen_ai.request.model"] == "unknown"  # raw names never become attributes
    assert anon.attributes["gen_ai.operation.name"] == "text_completion"
    statuses = {
        (p.attributes["modelyard.tenant"], p.attributes["modelyard.status"]): p.value
        for p in pts["modelyard.requests"]
    }
    assert statuses == {("acme", "ok"): 1, ("anonymous", "error_502"): 1}
    assert [p.value for p in pts["modelyard.cost"]] == [0.5]
    durations = {p.attributes["modelyard.tenant"]: p for p in pts["gen_ai.server.request.duration"]}
    assert (
        durations["acme"].sum == pytest.approx(0.5)
        and durations["beta"].attributes["error.type"] == "upstream"
    )
    [ttft] = pts["gen_ai.server.time_to_first_token"]
    assert ttft.sum == pytest.approx(0.1)
    [tpot] = pts["gen_ai.server.time_per_output_token"]
    assert tpot.sum == pytest.approx(0.4 / 4)  # decode time over the tokens after the first
    provider.shutdown()


class _Collector(BaseHTTPRequestHandler):
    exports: list[bytes]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/metrics":
            self.server.exports.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    server.exports = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _totals(body: bytes) -> dict[str, dict[tuple[str, ...], float]]:
    """metric name -> (tenant, token type or status) -> sum (histograms: also ``count`` under ``#``)."""
    req = ExportMetricsServiceRequest.FromString(body)
    out: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points:
                    a = {kv.key: kv.value.string_value for kv in p.attributes}
                    key = (a["modelyard.tenant"], a.get("gen_ai.token.type") or a.get("modelyard.status", ""))
                    if kind == "histogram":
                        out[m.name][key] += p.sum
                        out[m.name + "#"][key] += p.count
                    else:
                        out[m.name][key] += p.as_double or p.as_int
    return out


def _ledger(db: str) -> dict[str, dict[tuple[str, ...], float]]:
    store = TenancyStore(db, SECRET.encode())
    try:
        rows = store.usage_rows()
    finally:
        store.close()
    out: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        t = r["tenant_id"]
        out["gen_ai.client.token.usage"][t, "input"] += r["prompt_tokens"]
        out["gen_ai.client.token.usage"][t, "output"] += r["completion_tokens"]
        out["gen_ai.client.token.usage#"][t, "input"] += 1
        out["gen_ai.client.token.usage#"][t, "output"] += 1
        out["modelyard.requests"][t, r["status"]] += 1
        out["modelyard.cost"][t, ""] += r["cost"]
    return out


def test_exported_metrics_equal_the_ledger_tenant_by_tenant(
    mock_upstream: MockUpstream, collector: HTTPServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'otel.db'}"
    admin = bootstrap_admin(db)
    cfg = tenancy_config(mock_upstream.url, db, prices=PRICES, metering_flush_s=0.05)
    cfg["embedders"] = []
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    (tmp_path / "srv").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        srv = RemoteServer(tmp_path / "srv", cfg)  # the server inherits the OTEL_* variables
    try:
        auth = {"authorization": f"Bearer {admin}"}
        keys = {}
        for tid in ("acme", "beta"):
            r = httpx.post(
                f"{srv.url}/admin/tenants",
                json={"id": tid, "models": ["remote-chat", "broken"]},
                headers=auth,
            )
            assert r.status_code == 201, r.text
            r = httpx.post(
                f"{srv.url}/admin/keys", json={"tenant": tid, "scopes": ["inference"]}, headers=auth
            )
            keys[tid] = r.json()["key"]
        sent: dict[str, int] = defaultdict(int)

        def call(tid: str, body: dict[str, Any]) -> None:
            msgs = [{"role": "user", "content": "one two three four five six"}]
            r = httpx.post(
                f"{srv.url}/v1/chat/completions",
                json={"model": "remote-chat", "messages": msgs, **body},
                headers={"authorization": f"Bearer {keys[tid]}"},
                timeout=30,
            )
            r.read()
            sent[tid] += 1

        call("acme", {"max_tokens": 4})
        call("acme", {"max_tokens": 2, "stream": True})
        call("acme", {"max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}})
        call("acme", {"model": "broken"})
        call("beta", {"max_tokens": 1})
        call("beta", {"max_tokens": 6, "stream": True})
        call("beta", {"model": "not-granted"})  # 404 before admission: observed, never metered

        deadline = time.monotonic() + 20
        while True:
            want = _ledger(db)
            got = _totals(collector.exports[-1]) if collector.exports else {}  # type: ignore[attr-defined]
            counts = got.get("gen_ai.server.request.duration#", {})
            done = sum(want["modelyard.requests"].values()) == 6 and sum(counts.values()) == 7
            if (done and all(got.get(n) == want[n] for n in want)) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sum(want["modelyard.requests"].values()) == 6, want
        assert want["gen_ai.client.token.usage"]["acme", "output"] > 0
        for name in want:
            assert {k: pytest.approx(v) for k, v in want[name].items()} == dict(got[name]), name
        assert {k[0]: v for k, v in got["gen_ai.server.request.duration#"].items()} == sent
        assert got["gen_ai.server.time_to_first_token#"][("acme", "")] == 2  # two streams
    finally:
        srv.close()
