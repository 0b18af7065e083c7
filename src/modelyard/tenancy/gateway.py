"""``TenantGateway``: the gateway pipeline with tenancy around it.

Every inference call goes: model access (404 if not granted) -> admission (rate limits, concurrency,
budget reservation) -> the plain :class:`~modelyard.gateway.pipeline.Gateway` (resolution, routing,
fallbacks) -> settlement and metering, exactly once per client request whatever the retries inside.
Streams are always asked for usage from the backend (the usage chunk is passed on only if the client
asked for it), so the ledger holds the tokens the backend reported.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

import orjson

from modelyard.errors import InvalidRequest, ModelyardError
from modelyard.gateway.backends.base import BackendRequest, Endpoint, ParsedRequest
from modelyard.gateway.pipeline import Gateway, StreamHandle
from modelyard.protocol.openai import StreamOptions
from modelyard.tenancy.records import ANONYMOUS, Principal
from modelyard.tenancy.service import Tenancy, Ticket

# Set by the auth middleware for the request being served (a pure ASGI middleware awaits the app in
# the same task, so the value reaches the handler and the gateway).
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "modelyard_principal", default=None
)
# Response headers the admission step wants sent (x-ratelimit-*); read by the auth middleware.
current_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "modelyard_tenancy_headers", default=None
)


def _principal() -> Principal:
    return current_principal.get() or ANONYMOUS


def _usage_of(body: bytes) -> dict[str, Any] | None:
    try:
        usage = orjson.loads(body).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


class TenantGateway(Gateway):
    def __init__(self, *args: Any, tenancy: Tenancy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenancy = tenancy

    async def _admit(self, endpoint: Endpoint, parsed: ParsedRequest, rid: str) -> Ticket:
        principal = _principal()
        self.check_limits(endpoint, parsed)
        route_ref, adapter, version = await self.tenancy.check_model(principal, parsed.model)
        ticket = await self.tenancy.admit(principal, route_ref.split("@")[0], endpoint.value, parsed, rid)
        ticket.adapter, ticket.version = adapter, version
        sink = current_headers.get()
        if sink is not None:
            sink.update(ticket.headers)
        return ticket

    async def _prepare(
        self, endpoint: Endpoint, parsed: ParsedRequest, body: dict[str, Any], request_id: str
    ) -> BackendRequest:
        req = await super()._prepare(endpoint, parsed, body, request_id)
        ticket: Ticket | None = _TICKET.get()
        if ticket is not None and ticket.adapter is not None:
            if not any(getattr(d.backend, "local", False) for d in self.router.deployments(req.model)):
                raise InvalidRequest(
                    f"`{ticket.adapter.model_name}` is an adapter of a model served by a remote deployment; "
                    "private adapters are served by the built-in engine only",
                    param="model",
                )
            req.lora = ticket.adapter  # type: ignore[attr-defined]
        principal = _principal()
        if principal.tenant_id is not None:
            req.cache_salt = principal.tenant_id  # type: ignore[attr-defined]
        return req

    async def complete(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        *args: Any,
        **kw: Any,
    ) -> bytes:
        ticket = await self._admit(endpoint, parsed, request_id)
        token = _TICKET.set(ticket)
        parsed, body = _route_to_base(parsed, body, ticket)
        try:
            out = await super().complete(endpoint, parsed, body, request_id, *args, **kw)
        except BaseException as exc:
            await self.tenancy.settle(ticket, None, _status(exc))
            raise
        finally:
            _TICKET.reset(token)
        ticket.first_byte = time.monotonic()
        await self.tenancy.settle(ticket, _usage_of(out), "ok")
        return out

    async def open_stream(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        *args: Any,
        **kw: Any,
    ) -> StreamHandle:
        ticket = await self._admit(endpoint, parsed, request_id)
        wants_usage = bool(getattr(parsed, "stream_options", None) and parsed.stream_options.include_usage)  # type: ignore[union-attr]
        parsed, body = _route_to_base(parsed, body, ticket)
        if not wants_usage and endpoint is not Endpoint.EMBEDDINGS:
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
            parsed = parsed.model_copy(update={"stream_options": StreamOptions(include_usage=True)})
        token = _TICKET.set(ticket)
        try:
            handle = await super().open_stream(endpoint, parsed, body, request_id, *args, **kw)
        except BaseException as exc:
            await self.tenancy.settle(ticket, None, _status(exc))
            raise
        finally:
            _TICKET.reset(token)
        ticket.first_byte = time.monotonic()
        return MeteredStream(handle, self.tenancy, ticket, wants_usage)  # type: ignore[return-value]

    async def visible_models(self) -> list[str]:
        principal = _principal()
        names = [m for m in self.router.models() if principal.may_use(m)]
        import anyio

        owner = None if principal.is_system_admin else principal.tenant_id
        if owner is not None or principal.is_system_admin:
            adapters = await anyio.to_thread.run_sync(self.tenancy.store.list_adapters, owner)
            names += [
                a.model_name
                for a in adapters
                if principal.may_use(a.base_model) and self.router.has_model(a.base_model)
            ]
        return names

    async def resolve_visible(self, ref: str) -> str:
        route_ref, _, _ = await self.tenancy.check_model(_principal(), ref)
        return await self.resolver.resolve(route_ref)


_TICKET: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("modelyard_ticket", default=None)


def _route_to_base(
    parsed: ParsedRequest, body: dict[str, Any], ticket: Ticket
) -> tuple[ParsedRequest, dict[str, Any]]:
    """An adapter request is routed as its base model (the adapter rides along on the request)."""
    if ticket.adapter is None:
        return parsed, body
    base = ticket.adapter.base_model
    return parsed.model_copy(update={"model": base}), {**body, "model": base}


def _status(exc: BaseException) -> str:
    if isinstance(exc, ModelyardError):
        return f"error_{exc.status_code}"
    if isinstance(exc, asyncio.CancelledError):
        return "disconnected"  # the client went away; the backend was aborted
    return "error_500"


class MeteredStream:
    """Wraps a :class:`StreamHandle`: notes the usage chunk, hides it unless the client asked, and
    settles the ticket when the stream closes (completed, failed mid-way, or client gone)."""

    def __init__(self, handle: StreamHandle, tenancy: Tenancy, ticket: Ticket, pass_usage: bool) -> None:
        self._handle = handle
        self._tenancy = tenancy
        self._ticket = ticket
        self._pass_usage = pass_usage
        self._usage: dict[str, Any] | None = None
        self._chunks = 0
        self._done = False
        self._failed: BaseException | None = None

    def __aiter__(self) -> MeteredStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                payload = await self._handle.__anext__()
            except StopAsyncIteration:
                self._done = True
                raise
            except BaseException as exc:
                self._failed = exc
                raise
            if b'"usage"' in payload:
                usage = _usage_of(payload)
                if usage is not None:
                    self._usage = usage
                    try:
                        empty = not orjson.loads(payload).get("choices")
                    except orjson.JSONDecodeError:
                        empty = False
                    if empty and not self._pass_usage:
                        continue
            else:
                self._chunks += 1
            return payload

    async def aclose(self) -> None:
        try:
            await self._handle.aclose()
        finally:
            if self._failed is not None:
                status = _status(self._failed)
            elif self._done or self._usage is not None:
                status = "ok"
            else:
                status = "disconnected"
            await self._tenancy.settle(self._ticket, self._usage, status, self._chunks)
