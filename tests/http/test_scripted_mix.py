"""A scripted mix of requests against a real server; metrics, spans and the request log must agree
with what happened, request by request (streamed, non-streamed, truncated, failed, disconnected)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servers import MockUpstream, RemoteServer, remote_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def obs_server(
    mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RemoteServer]:
    tmp = tmp_path_factory.mktemp("obs")
    config = remote_config(mock_upstream.url)
    config["embedders"] = []
    config["monitoring"] = {
        "tracing": {"exporter": "file", "file_path": str(tmp / "spans.jsonl"), "token_events_every": 1},
        "request_log": {"flush_interval_s": 0.1},
    }
    srv = RemoteServer(tmp, config)
    srv.spans_path = tmp / "spans.jsonl"  # type: ignore[attr-defined]
    yield srv
    srv.close()


def _chat(model: str, text: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics").text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _spans(path: Path, want: set[str], timeout_s: float = 10) -> dict[str, dict[str, Any]]:
    """Root request spans by request id, once every id in ``want`` has one; plus children by parent."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        roots = {
            s["attributes"]["modelyard.request_id"]: s
            for s in spans
            if "modelyard.request_id" in s["attributes"]
        }
        if want <= roots.keys() or time.monotonic() > deadline:
            for root in roots.values():
                root["children"] = {
                    s["name"]: s for s in spans if s.get("parent_id") == root["context"]["span_id"]
                }
            return roots
        time.sleep(0.1)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_scripted_mix(obs_server: RemoteServer) -> None:
    url, client = obs_server.url, obs_server.client
    before = _samples(url)
    lab = {"model": "remote-chat", "tenant": "anonymous"}

    # 1. streamed, four content chunks ("echo: hello there world"), client clocks the first chunk
    t_sent = time.time()
    stream = client.chat.completions.create(
        **_chat("remote-chat", "hello there world"),
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": "mix-stream", "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
    )
    first_at = None
    pieces = []
    for chunk in stream:
        if first_at is None:
            first_at = time.time()
        pieces.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(pieces) == "echo: hello there world"
    # 2. non-streamed
    out = client.chat.completions.create(
        **_chat("remote-chat", "one two"), extra_headers={"x-request-id": "mix-plain"}
    )
    assert out.choices[0].finish_reason == "stop"
    # 3. truncated (max_tokens=2 of 5 words), streamed
    chunks = list(
        client.chat.completions.create(
            **_chat("remote-chat", "a b c d"),
            max_tokens=2,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": "mix-trunc"},
        )
    )
    assert chunks[-2].choices[0].finish_reason == "length" and chunks[-1].usage is not None
    # 4. failed before the first byte (upstream 500) and mid-stream (upstream drops the connection)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**_chat("broken", "x"), extra_headers={"x-request-id": "mix-broken"})
    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                **_chat("midstream", "p q r s"), stream=True, extra_headers={"x-request-id": "mix-mid"}
            )
        )
    # 5. client disconnects from a slow stream after three chunks
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=_chat("slow", "x", stream=True),
        headers={"x-request-id": "mix-gone"},
        timeout=10,
    ) as r:
        got = 0
        for line in r.iter_lines():
            got += line.startswith("data: ")
            if got == 3:
                break
    # 6. an unknown model: 404, labelled `unknown` rather than the raw string
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            **_chat("no-such-model-xyz", "x"), extra_headers={"x-request-id": "mix-404"}
        )

    deadline = time.monotonic() + 5
    while True:  # the disconnect is noticed asynchronously
        after = _samples(url)
        if (
            _value(
                after,
                "modelyard_client_disconnects_total",
                model="slow",
                tenant="anonymous",
                endpoint="chat/completions",
            )
            - _value(
                before,
                "modelyard_client_disconnects_total",
                model="slow",
                tenant="anonymous",
                endpoint="chat/completions",
            )
            >= 1
        ):
            break
        assert time.monotonic() < deadline, "disconnect not counted"
        time.sleep(0.1)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    ep = {"endpoint": "chat/completions"}
    assert delta("modelyard_requests_total", **lab, **ep, status="200") == 3
    assert delta("modelyard_requests_total", model="broken", tenant="anonymous", **ep, status="502") == 1
    assert delta("modelyard_requests_total", model="midstream", tenant="anonymous", **ep, status="502") == 1
    assert delta("modelyard_requests_total", model="slow", tenant="anonymous", **ep, status="499") == 1
    assert delta("modelyard_requests_total", model="unknown", tenant="anonymous", **ep, status="404") == 1
    assert (
        delta("modelyard_request_failures_total", model="broken", tenant="anonymous", cause="upstream") == 1
    )
    assert (
        delta("modelyard_request_failures_total", model="midstream", tenant="anonymous", cause="upstream")
        == 1
    )
    assert (
        delta("modelyard_request_failures_total", model="unknown", tenant="anonymous", cause="not_found") == 1
    )
    assert delta("modelyard_request_finish_reason_total", **lab, finish_reason="stop") == 2
    assert delta("modelyard_request_finish_reason_total", **lab, finish_reason="length") == 1
    # TTFT for the two remote-chat streams; ITL: 3 gaps (4 content chunks) + 1 gap (2 chunks)
    assert delta("modelyard_time_to_first_token_seconds_count", **lab) == 2
    assert delta("modelyard_inter_token_latency_seconds_count", **lab) == 4
    assert delta("modelyard_e2e_request_latency_seconds_count", **lab, **ep) == 3
    # tokens from usage: generated 4 (stream) + 3 (plain) + 2 (truncated); prompt 3 + 2 + 4
    assert delta("modelyard_generation_tokens_total", **lab) == 9
    assert delta("modelyard_prompt_tokens_total", **lab) == 9
    assert not any(k[0].startswith("modelyard_") and ("model", "no-such-model-xyz") in k[1] for k in after)

    spans = _spans(
        obs_server.spans_path,
        {"mix-stream", "mix-plain", "mix-trunc", "mix-broken", "mix-mid", "mix-gone", "mix-404"},
    )
    s = spans["mix-stream"]
    a = s["attributes"]
    assert s["context"]["trace_id"] == "0x" + TRACE_ID and s["parent_id"] == "0x" + PARENT_SPAN
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "remote-chat"
    assert a["gen_ai.usage.output_tokens"] == 4 and list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert [e["name"] for e in s["events"]] == ["gen_ai.token"] * 4
    start = _ts(s["start_time"])
    first = _ts(a["langfuse.observation.completion_start_time"])
    assert abs(start + a["gen_ai.response.time_to_first_chunk"] - first) < 0.002
    assert first_at is not None and -0.002 < first_at - first < 0.05, first_at - first
    assert abs((first - start) - (first_at - t_sent)) < 0.05
    assert {"queue", "prefill", "decode"} <= s["children"].keys()
    assert abs(_ts(s["children"]["prefill"]["end_time"]) - first) < 0.001

    assert spans["mix-plain"]["attributes"]["gen_ai.usage.input_tokens"] == 2
    assert "generate" in spans["mix-plain"]["children"]
    assert list(spans["mix-trunc"]["attributes"]["gen_ai.response.finish_reasons"]) == ["length"]
    for rid, cause in (("mix-broken", "upstream"), ("mix-mid", "upstream"), ("mix-404", "not_found")):
        assert spans[rid]["status"]["status_code"] == "ERROR"
        assert spans[rid]["attributes"]["error.type"] == cause
    assert spans["mix-gone"]["attributes"]["modelyard.client_disconnected"] is True
    assert spans["mix-gone"]["attributes"]["http.response.status_code"] == 499

    # the request log holds every request with the same facts
    deadline = time.monotonic() + 10
    while True:
        logs = httpx.get(f"{url}/monitoring/logs", params={"since": "10m", "limit": 100}).json()["data"]
        by_id = {r["request_id"]: r for r in logs}
        if {"mix-stream", "mix-gone", "mix-404"} <= by_id.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert by_id["mix-stream"]["response"] == "echo: hello there world"
    assert by_id["mix-stream"]["trace_id"] == TRACE_ID
    assert by_id["mix-trunc"]["finish_reason"] == "length"
    assert by_id["mix-broken"]["status"] == 502 and by_id["mix-broken"]["error"] == "upstream"
    assert by_id["mix-gone"]["status"] == 499 and by_id["mix-gone"]["error"] == "disconnect"
    assert (
        by_id["mix-404"]["model"] == "unknown" and by_id["mix-404"]["model_requested"] == "no-such-model-xyz"
    )
    assert by_id["mix-plain"]["prompt"] == [{"role": "user", "content": "one two"}]
