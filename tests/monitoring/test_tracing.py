"""Exporter choice from settings and OTEL_* variables; file and real OTLP/HTTP export."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from modelyard.errors import ConfigError
from modelyard.monitoring.tracing import build_tracer_provider, choose_exporter, extract, inject
from modelyard.settings import TracingSettings


def test_choose_exporter() -> None:
    auto = TracingSettings()
    assert choose_exporter(auto, {}) == "none"
    assert choose_exporter(auto, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "otlp"
    assert choose_exporter(auto, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == "otlp"
    assert choose_exporter(TracingSettings(exporter="file"), {"OTEL_SDK_DISABLED": "true"}) == "none"
    assert build_tracer_provider(auto, {}) is None
    with pytest.raises(ConfigError, match="file_path"):
        build_tracer_provider(TracingSettings(exporter="file"), {})


def test_file_exporter_writes_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    provider = build_tracer_provider(
        TracingSettings(exporter="file", file_path=path), {"OTEL_SERVICE_NAME": "yard"}
    )
    assert provider is not None
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer", attributes={"gen_ai.request.model": "m"}):
        headers: dict[str, str] = {}
        inject(headers)
    provider.shutdown()
    [span] = [json.loads(line) for line in path.read_text().splitlines()]
    assert span["name"] == "outer" and span["attributes"]["gen_ai.request.model"] == "m"
    assert span["resource"]["attributes"]["service.name"] == "yard"
    assert headers["traceparent"].split("-")[1] == span["context"]["trace_id"][2:]
    parent = extract(headers)
    from opentelemetry import trace

    assert (
        format(trace.get_current_span(parent).get_span_context().span_id, "016x")
        == span["context"]["span_id"][2:]
    )


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        _Collector.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_otlp_export_follows_otel_variables(collector: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic abc")
    provider = build_tracer_provider(TracingSettings())  # auto -> otlp because the endpoint is set
    assert provider is not None
    provider.get_tracer("t").start_span("chat m", attributes={"gen_ai.operation.name": "chat"}).end()
    provider.shutdown()
    path, headers, body = _Collector.received[-1]
    assert path == "/v1/traces" and headers.get("authorization") == "Basic abc"
    req = ExportTraceServiceRequest.FromString(body)
    [span] = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert span.name == "chat m"
    assert {a.key: a.value.string_value for a in span.attributes}["gen_ai.operation.name"] == "chat"
