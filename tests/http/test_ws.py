"""WebSocket chat streaming: same frames, errors, limits and metrics as SSE, on the real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from servers import MockUpstream, RemoteServer


@pytest.fixture
def ws(server: RemoteServer) -> Iterator[ClientConnection]:
    with connect(server.url.replace("http://", "ws://") + "/v1/chat/completions/ws", open_timeout=10) as conn:
        yield conn


def _req(model: str, text: str, **kw: Any) -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}], **kw})


def _until_end(conn: ClientConnection) -> tuple[list[dict[str, Any]], str | dict[str, Any]]:
    """Chunks of one request and how it ended: ``[DONE]`` or the error frame."""
    chunks: list[dict[str, Any]] = []
    while True:
        frame = conn.recv(timeout=10)
        assert isinstance(frame, str)
        if frame == "[DONE]":
            return chunks, frame
        data = json.loads(frame)
        if "error" in data:
            return chunks, data
        chunks.append(data)


def _text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_streams_like_sse_and_serves_requests_in_turn(server: RemoteServer, ws: ClientConnection) -> None:
    ws.send(_req("remote-chat", "hello over a socket"))
    chunks, end = _until_end(ws)
    assert end == "[DONE]" and _text(chunks) == "echo: hello over a socket"
    sse = list(
        server.client.chat.completions.create(
            model="remote-chat", messages=[{"role": "user", "content": "hello over a socket"}], stream=True
        )
    )
    assert [c["choices"] for c in chunks] == [c.model_dump(exclude_unset=True)["choices"] for c in sse]
    ws.send(_req("remote-chat", "again", max_tokens=1, stream_options={"include_usage": True}))
    chunks, end = _until_end(ws)
    assert end == "[DONE]" and chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize(
    ("frame", "status", "code", "param"),
    [
        ("not json", 400, None, None),
        ("[1, 2]", 400, None, None),
        (json.dumps({"model": "remote-chat"}), 400, "invalid_value", "messages"),
        (_req("no-such-model", "x"), 404, "model_not_found", "model"),
        (_req("remote-chat", "x", n=99), 400, None, "n"),
        (_req("ratelimited", "x"), 429, "rate_limit_exceeded", None),
    ],
)
def test_errors_before_the_first_chunk_keep_the_socket(
    ws: ClientConnection, frame: str, status: int, code: str | None, param: str | None
) -> None:
    ws.send(frame)
    chunks, end = _until_end(ws)
    assert chunks == [] and isinstance(end, dict)
    assert end["status"] == status and end["error"]["param"] == param
    if code is not None:
        assert end["error"]["code"] == code
    ws.send(_req("remote-chat", "still here"))
    assert _until_end(ws)[1] == "[DONE]"


def test_midstream_failure_is_an_error_frame_without_done(ws: ClientConnection) -> None:
    ws.send(_req("midstream", "a b c d"))
    chunks, end = _until_end(ws)
    assert len(chunks) >= 1 and isinstance(end, dict) and end["status"] == 502


def test_oversized_frame_is_413_and_closes(ws: ClientConnection) -> None:
    ws.send(_req("remote-chat", "x" * 70_000))  # limits.max_body_bytes is 65536 in the test config
    end = json.loads(ws.recv(timeout=10))
    assert end["status"] == 413 and end["error"]["code"] == "payload_too_large"
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_cancel_and_disconnect_free_the_upstream(
    server: RemoteServer, mock_upstream: MockUpstream, ws: ClientConnection
) -> None:
    ws.send(_req("slow", "x"))
    for _ in range(3):
        ws.recv(timeout=10)
    ws.send(json.dumps({"model": "remote-chat"}))  # a second request mid-stream is refused in-band
    ws.send(json.dumps({"type": "cancel"}))
    frames = []
    while True:
        data = json.loads(ws.recv(timeout=10))
        if "error" in data:
            frames.append(data["error"]["code"])
            if data["error"]["code"] == "cancelled":
                break
    assert frames[-1] == "cancelled"
    ws.send(_req("remote-chat", "after cancel"))
    assert _until_end(ws)[1] == "[DONE]"
    ws.send(_req("slow", "x"))
    ws.recv(timeout=10)
    ws.close()
    deadline = time.monotonic() + 5
    while mock_upstream.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mock_upstream.stats()["in_flight"] == 0
    metrics = httpx.get(f"{server.url}/metrics").text
    assert (
        'modelyard_requests_total{endpoint="chat/completions/ws",model="slow",status="499",tenant="anonymous"}'
        in metrics
    )
