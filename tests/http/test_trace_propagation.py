"""W3C trace context goes in with the client's ``traceparent`` and out to the upstream deployment."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from servers import RemoteServer, free_port

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


class HeaderRecordingUpstream:
    """A minimal OpenAI upstream (non-stream chat) that records the headers of each request."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _chat(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return web.json_response(body)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RemoteServer, HeaderRecordingUpstream, Path]]:
    upstream = HeaderRecordingUpstream()
    tmp = tmp_path_factory.mktemp("trace")
    spans = tmp / "spans.jsonl"
    config: dict[str, Any] = {
        "local_models": [],
        "embedders": [],
        "deployments": [{"model": "m", "base_url": f"http://127.0.0.1:{upstream.port}/v1", "max_retries": 0}],
        "monitoring": {"tracing": {"exporter": "file", "file_path": str(spans)}},
    }
    srv = RemoteServer(tmp, config)
    yield srv, upstream, spans
    srv.close()
    upstream.close()


def test_traceparent_in_and_out(traced: tuple[RemoteServer, HeaderRecordingUpstream, Path]) -> None:
    srv, upstream, spans_path = traced
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(
        f"{srv.url}/v1/chat/completions",
        json=body,
        headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01", "x-request-id": "tp-1"},
    )
    assert r.status_code == 200
    sent = upstream.seen[-1]["traceparent"].split("-")
    assert sent[1] == TRACE_ID and sent[3] == "01"
    deadline = time.monotonic() + 10
    span = None
    while span is None and time.monotonic() < deadline:
        lines = spans_path.read_text().splitlines() if spans_path.exists() else []
        span = next(
            (s for s in map(json.loads, lines) if s["attributes"].get("modelyard.request_id") == "tp-1"), None
        )
        time.sleep(0.05)
    assert span is not None
    assert span["parent_id"] == "0xb7ad6b7169203331"
    assert sent[2] == span["context"]["span_id"][2:]  # the upstream call is a child of the request span
    # without an incoming traceparent a fresh trace starts and still propagates
    httpx.post(f"{srv.url}/v1/chat/completions", json=body)
    fresh = upstream.seen[-1]["traceparent"].split("-")
    assert fresh[1] != TRACE_ID and len(fresh[1]) == 32
