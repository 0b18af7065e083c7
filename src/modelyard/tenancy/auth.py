"""``AuthMiddleware``: pure ASGI authentication and scope checks in front of every route.

Resolves the caller once per request (``Authorization: Bearer <key>``) into a
:class:`~modelyard.tenancy.records.Principal`, exposed as ``request.state.principal`` and to the
gateway through :data:`~modelyard.tenancy.gateway.current_principal`. Coarse scope rules live here;
per-tenant rules (a tenant admin sees only its tenant) live in the admin handlers.

Closed by default: a path is public only if it is on :data:`PUBLIC_PATHS` (``/health``, ``/ready``,
and ``/metrics`` unless ``tenancy.metrics_require_key``); every other path, existing or not, HTTP or
WebSocket, needs a caller. Then:

- ``/v1/*`` POST (and WebSocket) needs ``inference`` (or ``admin``); ``GET /v1/models*`` any scope.
- ``/admin/models*`` (the model registry) needs a system admin key.
- :data:`SYSTEM_PATHS` (``/stats``, and ``/metrics`` when it needs a key) show every tenant at once,
  so they need a system admin key (or anonymous local admin where ``tenancy.auth`` allows it).
- Everything else (``/admin/*``, ``/monitoring/*``) needs ``admin`` or ``read``; the handlers check
  the tenant themselves (a tenant key sees only its own tenant).

Without a key: anonymous local admin if the tenancy settings allow it, else 401. With anonymous
allowed, a bearer token that does not look like a modelyard key is ignored (the OpenAI client always
sends one); a token that does look like a key must verify, so a revoked key never falls back.
The body is never read or buffered.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.errors import AuthenticationError, ModelyardError, PermissionDenied
from modelyard.http.errors import error_bytes
from modelyard.tenancy.gateway import current_headers, current_principal
from modelyard.tenancy.keys import looks_like_key
from modelyard.tenancy.records import ANONYMOUS, Principal
from modelyard.tenancy.records import Scope as KeyScope
from modelyard.tenancy.service import Tenancy


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            raw = value.decode("latin-1").strip()
            if raw[:7].lower() == "bearer ":
                return raw[7:].strip() or None
            return None
    return None


# Answer without a caller. Liveness and readiness carry no tenant data.
PUBLIC_PATHS = frozenset({"/health", "/ready"})
METRICS_PATH = "/metrics"
# Routes whose answer covers every tenant: only system admins may read them.
SYSTEM_PATHS = frozenset({"/stats", METRICS_PATH})


def is_public(path: str, *, metrics_require_key: bool) -> bool:
    """Whether ``path`` answers without an API key."""
    return path in PUBLIC_PATHS or (path == METRICS_PATH and not metrics_require_key)


def _check_scope(principal: Principal, method: str, path: str) -> None:
    scopes = principal.scopes
    if path.startswith("/v1/"):
        if method == "GET" and path.startswith("/v1/models"):
            return
        if not scopes & {KeyScope.INFERENCE, KeyScope.ADMIN}:
            raise PermissionDenied("This API key does not have the `inference` scope.")
        return
    if path.startswith("/admin/models") and not principal.is_system_admin:
        raise PermissionDenied("The model registry needs a system admin key.")
    if path in SYSTEM_PATHS and not principal.is_system_admin:
        raise PermissionDenied(f"`{path}` covers every tenant: it needs a system admin key.")
    if not scopes & {KeyScope.ADMIN, KeyScope.READ}:
        raise PermissionDenied("Admin routes need an API key with the `admin` or `read` scope.")


async def authorize(tenancy: Tenancy, scope: Scope, method: str, path: str) -> Principal:
    """The caller of ``scope`` (HTTP or WebSocket) if it may call ``method path``.

    Raises ``AuthenticationError`` (no, unknown, revoked or expired key) or ``PermissionDenied``
    (a key without the scope the route needs). Used by :class:`AuthMiddleware` and the WebSocket route.
    """
    token = _bearer(scope)
    anonymous_ok = await tenancy.anonymous_allowed()
    if token is not None and (looks_like_key(token) or not anonymous_ok):
        principal = await tenancy.authenticate(token)
    elif anonymous_ok:
        principal = ANONYMOUS
    else:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>` "
            "(create one with `modelyard keys create`).",
            code="missing_api_key",
        )
    _check_scope(principal, method, path)
    return principal


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        kind = scope["type"]
        state: dict[str, Any] = scope.setdefault("state", {}) if kind != "lifespan" else {}
        tenancy: Tenancy | None = state.get("tenancy")
        if (
            kind not in ("http", "websocket")
            or tenancy is None  # app built without tenancy
            or is_public(path, metrics_require_key=tenancy.cfg.metrics_require_key)
        ):
            await self.app(scope, receive, send)
            return
        # A WebSocket upgrade is an inference call (the only socket route streams chat completions).
        method = scope["method"] if kind == "http" else "POST"
        try:
            principal = await authorize(tenancy, scope, method, path)
        except ModelyardError as exc:
            if kind == "http":
                await _send_error(send, exc)
            else:
                await _deny_websocket(scope, receive, send, exc)
            return
        state["principal"] = principal
        extra: dict[str, str] = {}
        p_token = current_principal.set(principal)
        h_token = current_headers.set(extra)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message["headers"] = [
                    *message.get("headers", ()),
                    *((k.encode(), v.encode()) for k, v in extra.items()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            current_principal.reset(p_token)
            current_headers.reset(h_token)


def _error_headers(exc: ModelyardError, body: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-should-retry", b"false"),
    ]
    if isinstance(exc, AuthenticationError):
        headers.append((b"www-authenticate", b'Bearer realm="modelyard"'))
    return headers


async def _send_error(send: Send, exc: ModelyardError) -> None:
    body = error_bytes(exc)
    await send(
        {"type": "http.response.start", "status": exc.status_code, "headers": _error_headers(exc, body)}
    )
    await send({"type": "http.response.body", "body": body})


async def _deny_websocket(scope: Scope, receive: Receive, send: Send, exc: ModelyardError) -> None:
    """Refuse a WebSocket before it is accepted: the HTTP error where the server supports the
    denial extension, else close code 1008 (policy violation)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    body = error_bytes(exc)
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": exc.status_code,
                "headers": _error_headers(exc, body),
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
