"""Server-sent events for streamed completions.

Each payload goes out as ``data: <json>\\n\\n`` as soon as it exists, then ``data: [DONE]``. A failure
after the first event ends the stream with one in-band ``data: {"error": {...}}`` event (which the
openai client raises as ``APIError``) and no ``[DONE]``, so a client never mistakes it for a clean
end. When the client disconnects the backend stream is closed at once, which aborts the engine
request or closes the upstream connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

import anyio
from starlette.types import Receive, Scope, Send

from modelyard.http.errors import as_modelyard_error, error_bytes

log = logging.getLogger("modelyard.http")

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"


class PayloadStream(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class EventStreamResponse:
    """An ASGI response that relays a payload stream as SSE and always closes it."""

    def __init__(self, stream: PayloadStream, headers: dict[str, str] | None = None) -> None:
        self.stream = stream
        self.headers = [*_HEADERS, *((k.encode(), v.encode()) for k, v in (headers or {}).items())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                await self._relay(send)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _relay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(self.headers)})
        try:
            async for payload in self.stream:
                await send(
                    {"type": "http.response.body", "body": b"data: " + payload + b"\n\n", "more_body": True}
                )
            tail = _DONE
        except OSError:
            return  # the client went away; nothing left to tell it
        except Exception as exc:
            err = as_modelyard_error(exc)
            log.warning("stream failed mid-way: %s", err.message)
            tail = b"data: " + error_bytes(err) + b"\n\n"
        try:
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except OSError:
            pass
