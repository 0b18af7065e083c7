"""How an eval reaches its targets: the official ``openai.AsyncOpenAI`` client, at a URL or in process.

:func:`in_process` runs ``modelyard.app.create_app(settings)`` inside the calling process: it enters
the app's lifespan itself (Starlette's ``router.lifespan_context``), hands each request the lifespan
state the way a server does (a shallow copy per request scope), sends requests through
``httpx.ASGITransport`` (no socket), and waits for ``/ready`` before yielding the client. Leaving the
context drains and stops the app's services.

:class:`Clients` picks the client of a target: its own ``base_url`` (API key from ``api_key_env``),
else the run's default (``--url`` or the in-process app).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import openai

try:
    import httpx2 as httpx  # the HTTP client the installed openai is built on
except ImportError:  # pragma: no cover  (older openai releases use httpx)
    import httpx  # type: ignore[no-redef]

from modelyard.evals.prepare import Target
from modelyard.evals.suite import SuiteError

IN_PROCESS_URL = "http://modelyard.in-process"
Scope = MutableMapping[str, Any]


def _with_state(app: Any, state: dict[str, Any]) -> Any:
    async def asgi(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": dict(state)}
        await app(scope, receive, send)

    return asgi


async def _wait_ready(http: httpx.AsyncClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        resp = await http.get("/ready")
        if resp.status_code == 200:
            return
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        failed = [m for m in body.get("models", []) if isinstance(m, dict) and m.get("state") == "failed"]
        if failed:
            raise RuntimeError(f"a model failed to load: {failed[0]}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the in-process server was not ready within {timeout_s:.0f}s: {resp.text[:500]}"
            )
        await asyncio.sleep(0.2)


@asynccontextmanager
async def in_process(
    settings: Any, *, api_key: str | None = None, timeout_s: float = 60.0, ready_timeout_s: float = 900.0
) -> AsyncIterator[openai.AsyncOpenAI]:
    """An ``AsyncOpenAI`` client bound to a modelyard app running in this process (see the module doc)."""
    from modelyard.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=_with_state(app, dict(state or {})))
        async with httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL, timeout=timeout_s) as http:
            await _wait_ready(http, ready_timeout_s)
            client = openai.AsyncOpenAI(
                base_url=f"{IN_PROCESS_URL}/v1", api_key=api_key or "in-process", http_client=http
            )
            yield client


def at_url(url: str, api_key: str | None, *, timeout_s: float = 60.0) -> openai.AsyncOpenAI:
    base = url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return openai.AsyncOpenAI(
        base_url=base, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none", timeout=timeout_s
    )


class Clients:
    """The client of each target (a target's own ``base_url`` gets a client of its own)."""

    def __init__(self, default: openai.AsyncOpenAI | None) -> None:
        self.default = default
        self._own: dict[int, openai.AsyncOpenAI] = {}

    def add_targets(self, targets: list[Target], timeout_s: float) -> None:
        """Build the per-target clients; a missing ``api_key_env`` variable is an error naming it."""
        for t in targets:
            if t.spec.base_url is None:
                if self.default is None:
                    raise SuiteError(
                        f"targets[{t.index}].base_url: no --url and no in-process app for this target",
                        param=f"targets[{t.index}].base_url",
                    )
                continue
            key = None
            if t.spec.api_key_env:
                key = os.environ.get(t.spec.api_key_env)
                if key is None:
                    raise SuiteError(
                        f"targets[{t.index}].api_key_env: ${t.spec.api_key_env} is not set",
                        param=f"targets[{t.index}].api_key_env",
                    )
            self._own[t.index] = at_url(t.spec.base_url, key, timeout_s=timeout_s)

    def of(self, target: Target) -> openai.AsyncOpenAI:
        client = self._own.get(target.index) or self.default
        assert client is not None  # add_targets checked it
        return client

    async def close(self) -> None:
        for c in self._own.values():
            await c.close()
