"""The shadow mirror (layer 1 of a request's path): a share of a route's requests, as received, is
replayed to shadow targets after the primary answered; the client never sees a shadow result.

A request whose ``model`` is a configured route (``experiments.shadows``; prompt references are not
mirrored) and whose request id falls in the route's ``percent`` is put, once the primary answered
(the body returned, or the stream ended), on a bounded queue (``experiments.max_shadow_queue``); when
the queue is full the mirror is dropped and counted, so the primary never waits on it. One worker
task replays each queued request to each target through the routing pipeline itself (the innermost
layer): tenancy admission, budgets and the tenant's usage never see shadow traffic, which is
accounted here, per target, as its own ledger (requests, errors, latency, output tokens and the
similarity of the shadow's answer to the primary's: ``difflib`` ratio of the first choices' text).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.gateway.backends.base import Endpoint, ParsedRequest
from modelyard.monitoring.observer import NULL_OBSERVER, RequestObserver
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest

log = logging.getLogger("modelyard.experiments.shadow")


@dataclass(slots=True)
class ShadowLedger:
    """What one shadow target did (this process)."""

    requests: int = 0
    errors: int = 0
    latency_ms: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    similarity: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latency_ms)
        return {
            "requests": self.requests, "errors": self.errors, "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "latency_ms_p50": lat[len(lat) // 2] if lat else None,
            "similarity_mean": sum(self.similarity) / len(self.similarity) if self.similarity else None,
        }  # fmt: skip


@dataclass(slots=True, frozen=True)
class Mirror:
    endpoint: Endpoint
    body: dict[str, Any]
    request_id: str
    primary_text: str | None
    targets: tuple[str, ...]


def _sampled(request_id: str, percent: int) -> bool:
    return (
        percent >= 100
        or int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:4], "big") % 100 < percent
    )


def first_text(payload: bytes) -> str | None:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        return None
    msg = choices[0].get("message")
    text = (msg.get("content") if isinstance(msg, dict) else None) or choices[0].get("text")
    return text if isinstance(text, str) else None


class ShadowLayer:
    """Wraps the next layer; ``pipeline`` is the innermost ``Gateway`` the shadows are sent through."""

    def __init__(
        self, inner: Any, pipeline: Any, routes: dict[str, tuple[tuple[str, ...], int]], max_queue: int
    ) -> None:
        self.inner = inner
        self.pipeline = pipeline
        self.routes = routes  # route -> (targets, percent)
        self.queue: asyncio.Queue[Mirror] = asyncio.Queue(max_queue)
        self.dropped = 0
        self.ledgers: dict[str, ShadowLedger] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _mirror(self, endpoint: Endpoint, body: dict[str, Any], request_id: str) -> tuple[str, ...] | None:
        if endpoint not in (Endpoint.CHAT, Endpoint.COMPLETIONS) or isinstance(body.get("prompt"), dict):
            return None
        route = self.routes.get(str(body.get("model")))
        if route is None or not _sampled(request_id, route[1]):
            return None
        return route[0]

    def _enqueue(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        request_id: str,
        targets: tuple[str, ...],
        text: str | None,
    ) -> None:
        try:
            self.queue.put_nowait(Mirror(endpoint, body, request_id, text, targets))
        except asyncio.QueueFull:
            self.dropped += 1

    async def complete(
        self, endpoint: Endpoint, parsed: ParsedRequest, body: dict[str, Any], request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> bytes:  # fmt: skip
        out: bytes = await self.inner.complete(endpoint, parsed, body, request_id, observer)
        targets = self._mirror(endpoint, body, request_id)
        if targets:
            self._enqueue(endpoint, dict(body), request_id, targets, first_text(out))
        return out

    async def open_stream(
        self, endpoint: Endpoint, parsed: ParsedRequest, body: dict[str, Any], request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> Any:  # fmt: skip
        handle = await self.inner.open_stream(endpoint, parsed, body, request_id, observer)
        targets = self._mirror(endpoint, body, request_id)
        if not targets:
            return handle
        return MirroredStream(handle, lambda: self._enqueue(endpoint, dict(body), request_id, targets, None))

    async def run(self) -> None:
        """Replay queued mirrors until cancelled (one at a time: shadow load stays bounded)."""
        while True:
            m = await self.queue.get()
            for target in m.targets:
                await self._replay(m, target)

    async def _replay(self, m: Mirror, target: str) -> None:
        ledger = self.ledgers.setdefault(target, ShadowLedger())
        ledger.requests += 1
        body = {**m.body, "model": target, "stream": False}
        body.pop("stream_options", None)
        model = ChatCompletionRequest if m.endpoint is Endpoint.CHAT else CompletionRequest
        t0 = time.perf_counter()
        try:
            out = await self.pipeline.complete(
                m.endpoint, model.model_validate(body), body, f"{m.request_id}-shadow"
            )
        except Exception:
            ledger.errors += 1
            log.debug("shadow %s of %s failed", target, m.request_id, exc_info=True)
            return
        ledger.latency_ms.append((time.perf_counter() - t0) * 1000)
        try:
            usage = orjson.loads(out).get("usage") or {}
        except (orjson.JSONDecodeError, AttributeError):
            usage = {}
        ledger.output_tokens += int(usage.get("completion_tokens") or 0)
        ledger.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        text = first_text(out)
        if m.primary_text is not None and text is not None:
            ledger.similarity.append(difflib.SequenceMatcher(None, m.primary_text, text).ratio())

    def report(self) -> dict[str, Any]:
        return {
            "object": "shadow.report", "version": 1, "dropped": self.dropped, "queued": self.queue.qsize(),
            "routes": {r: {"targets": list(t), "percent": p} for r, (t, p) in self.routes.items()},
            "targets": {t: ledger.as_dict() for t, ledger in self.ledgers.items()},
        }  # fmt: skip


class MirroredStream:
    """A stream handle that enqueues its mirror once it ended cleanly."""

    def __init__(self, inner: Any, enqueue: Any) -> None:
        self._inner = inner
        self._enqueue = enqueue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            payload: bytes = await self._inner.__anext__()
        except StopAsyncIteration:
            self._enqueue()
            raise
        return payload

    async def aclose(self) -> None:
        await self._inner.aclose()
