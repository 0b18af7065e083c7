"""A backend for any OpenAI-compatible server (vLLM, TGI, SGLang, llama.cpp, Ollama, hosted APIs).

Responses pass through as bytes; only the request's ``model`` is rewritten to the upstream id.
One pooled keep-alive aiohttp session per deployment (httpx costs several times more CPU per
request here). Retries with exponential backoff on connection errors, 429 and 5xx happen only
before the first byte was handed to the caller.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from modelyard.errors import (
    InvalidRequest,
    ModelyardError,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from modelyard.gateway.backends.base import BackendRequest, Endpoint, RouteHint, RouteView
from modelyard.monitoring.tracing import with_trace_headers
from modelyard.settings import RemoteDeploymentSettings

_RETRYABLE = (UpstreamError, RateLimited)
_MAX_RETRY_AFTER_S = 5.0


class OpenAICompatBackend:
    """One remote deployment (see :class:`~modelyard.gateway.backends.base.Backend`)."""

    endpoints = frozenset(Endpoint)

    def __init__(self, settings: RemoteDeploymentSettings, name: str) -> None:
        self.name = name
        self.model = settings.model
        self._s = settings
        self._upstream_model = settings.upstream_model or settings.model
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if settings.api_key:
            self._headers["authorization"] = f"Bearer {settings.api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s, sock_connect=settings.timeout_s)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.timeout_s, sock_read=settings.timeout_s
        )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def ready(self) -> bool:
        return self._session is not None

    def stats(self) -> dict[str, Any]:
        return {"base_url": self._s.base_url, "upstream_model": self._upstream_model}

    def route_view(self, hint: RouteHint, in_flight: int) -> RouteView:
        """Load is in-flight / ``max_concurrency`` (else / ``weight``); an adapter request is served
        only when the upstream lists that adapter, and then it is loaded there (an affinity hit)."""
        capacity = self._s.max_concurrency or self._s.weight
        serves = hint.lora is None or hint.lora.model_name in self._s.adapters
        return RouteView(in_flight / capacity, serves, adapter_hit=hint.lora is not None and serves)

    def _payload(self, request: BackendRequest) -> bytes:
        body = dict(request.body)
        lora = request.lora
        body["model"] = self._upstream_model if lora is None else self._s.adapters[lora.model_name]
        return orjson.dumps(body)

    async def _post(self, request: BackendRequest, *, stream: bool) -> aiohttp.ClientResponse:
        """POST with retries; returns a 200 response whose body is not yet read."""
        assert self._session is not None, "backend not started"
        url = f"{self._s.base_url}/{request.endpoint.value}"
        payload = self._payload(request)
        timeout = self._stream_timeout if stream else self._timeout
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                resp = await self._session.post(
                    url, data=payload, headers=with_trace_headers(self._headers), timeout=timeout
                )
            except TimeoutError:
                error: ModelyardError = UpstreamTimeout(f"deployment {self.name} timed out")
            except aiohttp.ClientError as exc:
                error = UpstreamError(f"deployment {self.name} unreachable: {type(exc).__name__}")
            else:
                if resp.status == 200:
                    return resp
                try:
                    data = await resp.read()
                except (aiohttp.ClientError, TimeoutError):
                    data = b""
                finally:
                    resp.release()
                error = self._error_from(resp.status, data)
                retry_after = _retry_after(resp.headers.get("retry-after"))
            if not isinstance(error, _RETRYABLE) or attempt >= self._s.max_retries:
                raise error
            delay = retry_after if retry_after is not None else self._s.retry_backoff_s * (2**attempt)
            await asyncio.sleep(delay * (0.75 + random.random() / 2))
            attempt += 1

    def _error_from(self, status: int, data: bytes) -> ModelyardError:
        message, param, code = f"upstream answered {status}", None, None
        try:
            err = orjson.loads(data).get("error") or {}
            message = str(err.get("message") or message)
            param, code = err.get("param"), err.get("code")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            pass
        if status in (400, 422):
            return InvalidRequest(message, param=param, code=code)
        if status == 413:
            return PayloadTooLarge(message, param=param)
        if status == 429:
            return RateLimited(f"deployment {self.name} is rate limited: {message}")
        return UpstreamError(f"deployment {self.name} failed ({status}): {message}")

    async def complete(self, request: BackendRequest) -> bytes:
        resp = await self._post(request, stream=False)
        try:
            return await resp.read()
        except TimeoutError:
            raise UpstreamTimeout(f"deployment {self.name} timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"deployment {self.name} broke off: {type(exc).__name__}") from None
        finally:
            resp.release()

    async def stream(self, request: BackendRequest) -> AsyncIterator[bytes]:
        resp = await self._post(request, stream=True)
        clean = False
        try:
            buffer = b""
            async for piece in resp.content.iter_any():
                buffer += piece
                if b"\r" in buffer:
                    buffer = buffer.replace(b"\r\n", b"\n")
                while (cut := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[:cut], buffer[cut + 2 :]
                    for line in event.split(b"\n"):
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            clean = True
                            return
                        if data.startswith(b'{"error"'):
                            raise self._error_from(502, data)
                        yield data
            raise UpstreamError(f"deployment {self.name} ended the stream without [DONE]")
        except TimeoutError:
            raise UpstreamTimeout(f"deployment {self.name} stalled mid-stream") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"deployment {self.name} broke off mid-stream: {type(exc).__name__}"
            ) from None
        finally:
            # A stream we did not read to the end must not go back to the pool: closing the
            # connection is what tells the upstream to stop generating.
            if clean:
                resp.release()
            else:
                resp.close()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:
        return None
