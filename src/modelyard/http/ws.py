"""``/v1/chat/completions/ws``: chat completions streamed over a WebSocket.

The same pipeline as SSE (limits, routing, fallbacks, tenancy metering, observability), framed as:

- the client sends one text frame per request: the JSON body of ``POST /v1/chat/completions``
  (``stream`` is implied);
- the server answers with one text frame per chunk (exactly the SSE ``data`` payloads), then the
  text frame ``[DONE]``; the connection then takes the next request;
- any failure is one text frame ``{"error": {message, type, param, code}, "status": <http status>}``
  — before the first chunk it is the error the HTTP endpoint would have answered, after it the
  in-band error SSE sends (and no ``[DONE]``); the connection stays open;
- ``{"type": "cancel"}`` while a stream runs aborts it (like an SSE client going away) and is
  answered by an error frame with code ``cancelled`` and status 499; any other
  frame meanwhile is answered with a 400 error frame; closing the socket aborts the stream.

Authentication happens before the socket is accepted, with the same keys and scopes as HTTP; a
refusal is an HTTP error response (the ASGI WebSocket denial extension) or, where the server lacks
it, close code 1008. Frames larger than ``limits.max_body_bytes`` get a 413 error frame and close 1009.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

import anyio
import orjson
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from modelyard.errors import InvalidRequest, ModelyardError, PayloadTooLarge
from modelyard.gateway.backends.base import Endpoint
from modelyard.gateway.pipeline import Gateway
from modelyard.http.errors import as_modelyard_error, error_bytes
from modelyard.monitoring.monitor import Monitor
from modelyard.monitoring.observer import NULL_OBSERVER, ObservedStream
from modelyard.protocol.openai import ChatCompletionRequest

log = logging.getLogger("modelyard.http")
DONE = "[DONE]"
CANCELLED = orjson.dumps(
    {
        "error": {
            "message": "Cancelled by the client.",
            "type": "invalid_request_error",
            "param": None,
            "code": "cancelled",
        },
        "status": 499,
    }
).decode()


def _error_frame(exc: BaseException) -> str:
    err = as_modelyard_error(exc)
    body = orjson.loads(error_bytes(err))
    body["status"] = err.status_code
    return orjson.dumps(body).decode()


async def _authenticate(ws: WebSocket) -> Any:
    """The caller's principal (tenancy on), None (tenancy off); raises the HTTP auth errors."""
    state = ws.scope.setdefault("state", {})
    tenancy = state.get("tenancy")
    if tenancy is None:
        return None
    if state.get("principal") is not None:  # the auth middleware already checked this socket
        return state["principal"]
    from modelyard.tenancy.auth import authorize

    principal = await authorize(tenancy, ws.scope, "POST", "/v1/chat/completions")
    state["principal"] = principal
    return principal


async def _deny(ws: WebSocket, exc: ModelyardError) -> None:
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(
            Response(error_bytes(exc), status_code=exc.status_code, media_type="application/json")
        )
    else:
        await ws.close(code=1008, reason=exc.message[:120])


async def chat_ws(ws: WebSocket) -> None:
    try:
        principal = await _authenticate(ws)
    except ModelyardError as exc:
        await _deny(ws, exc)
        return
    token = None
    if principal is not None:
        from modelyard.tenancy.gateway import current_principal

        token = current_principal.set(principal)
    await ws.accept()
    try:
        await _serve(ws)
    except WebSocketDisconnect:
        pass
    finally:
        if token is not None:
            from modelyard.tenancy.gateway import current_principal

            current_principal.reset(token)


async def _receive_text(ws: WebSocket, cap: int) -> str | None:
    """The next text frame; None when the client closed."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        data = message.get("bytes") or b""
        text = data.decode("utf-8", "replace")
    if len(text.encode()) > cap:
        raise PayloadTooLarge(f"A frame is larger than {cap} bytes.")
    return text


async def _serve(ws: WebSocket) -> None:
    gateway: Gateway = ws.scope["state"]["gateway"]
    monitor: Monitor | None = ws.scope["state"].get("monitor")
    cap = gateway.limits.max_body_bytes
    while True:
        try:
            text = await _receive_text(ws, cap)
        except PayloadTooLarge as exc:
            await ws.send_text(_error_frame(exc))
            await ws.close(code=1009)
            return
        if text is None:
            return
        try:
            body = orjson.loads(text)
            if not isinstance(body, dict):
                raise InvalidRequest("Each request frame must be a JSON object.")
            body = {**body, "stream": True}
            parsed = ChatCompletionRequest.model_validate(body)
        except orjson.JSONDecodeError:
            await ws.send_text(_error_frame(InvalidRequest("We could not parse the JSON frame.")))
            continue
        except (ModelyardError, ValidationError) as exc:
            await ws.send_text(_error_frame(exc))
            continue
        if not await _stream_one(ws, gateway, monitor, parsed, body, cap):
            return


async def _stream_one(
    ws: WebSocket,
    gateway: Gateway,
    monitor: Monitor | None,
    parsed: ChatCompletionRequest,
    body: dict[str, Any],
    cap: int,
) -> bool:
    """Serve one request; False when the client went away."""
    rid = uuid.uuid4().hex
    obs = (
        monitor.observe(
            endpoint="chat/completions/ws",
            model_ref=parsed.model,
            request_id=rid,
            stream=True,
            body=body,
            state=ws.scope.get("state", {}),
            headers=ws.headers,
        )
        if monitor is not None
        else NULL_OBSERVER
    )
    try:
        with obs.activate():
            handle = await gateway.open_stream(Endpoint.CHAT, parsed, body, rid, obs)
    except Exception as exc:
        obs.failed(exc)
        await ws.send_text(_error_frame(exc))
        return True
    stream = ObservedStream(handle, obs)
    alive, cancelled = True, False
    try:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal alive, cancelled
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        alive = False
                        tg.cancel_scope.cancel()
                        return
                    frame = message.get("text") or ""
                    with contextlib.suppress(orjson.JSONDecodeError):
                        if orjson.loads(frame) == {"type": "cancel"}:
                            cancelled = True
                            tg.cancel_scope.cancel()
                            return
                    await ws.send_text(
                        _error_frame(
                            InvalidRequest(
                                'One request at a time per connection: wait for [DONE] or send {"type": "cancel"}.'
                            )
                        )
                    )

            tg.start_soon(watch)
            try:
                async for payload in stream:
                    await ws.send_text(payload.decode())
                tail = DONE
            except Exception as exc:
                log.warning("websocket stream failed mid-way: %s", as_modelyard_error(exc).message)
                tail = _error_frame(exc)
            await ws.send_text(tail)
            tg.cancel_scope.cancel()
    except (WebSocketDisconnect, OSError):
        alive = False
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
    if cancelled and alive:
        await ws.send_text(CANCELLED)
    return alive


routes = [WebSocketRoute("/v1/chat/completions/ws", chat_ws)]
