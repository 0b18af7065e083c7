"""Pure ASGI middleware of the HTTP edge (never buffers a body, streaming included).

``RequestIdMiddleware``: every response carries ``x-request-id`` (the client's, if it sent a sane
one, else a fresh id), exposed to handlers as ``request.state.request_id``; an exception escaping
the app becomes a 500 OpenAI error body (with the id) if no response was started yet.
``BodyLimitMiddleware``: bodies above ``max_body_bytes`` answer 413 (by ``content-length`` up
front, or as soon as the streamed body crosses the cap).
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.errors import PayloadTooLarge
from modelyard.http.errors import as_modelyard_error, error_bytes

_JSON = (b"content-type", b"application/json")


async def _send_error(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if 0 < len(value) <= 128 and value.isascii() and value.replace(b"-", b"").isalnum():
                    rid = value
                break
        if not rid:
            rid = uuid.uuid4().hex.encode()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid.decode()
        header = (b"x-request-id", rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                raise
            err = as_modelyard_error(exc)
            await _send_error(send, err.status_code, error_bytes(err), [header])


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request body is larger than {self.max_body_bytes} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > cap:
                    await _send_error(send, 413, error_bytes(self._too_large()), [])
                    return
                break
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)
