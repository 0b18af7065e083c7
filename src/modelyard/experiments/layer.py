"""The experiment layer (layer 2 of a request's path): assignment, the variant's overrides, exposures.

A request on a route with a running experiment (its ``model``, or for a prompt route the
``prompt.id``), whose unit is present (``user``, the header, the tenant or the key) and inside the
traffic share, gets the variant that :func:`~modelyard.experiments.assignment.assign` picks. The
variant's ``model`` or ``adapter`` replaces the request's model, its ``prompt_version`` fills an
unpinned prompt version, and its ``params`` fill only the parameters the request leaves unset (whose
parameter wins: the request, then the variant, then the prompt version, then the model version; see
``docs/experiments.md``). An experiment of a tenant applies to that tenant's requests only. Requests
without a unit, outside the share or on other routes pass through untouched. An experiment with a
``flag`` takes the variant from that OpenFeature string flag instead, the unit as targeting key (any
provider the process set; :func:`flag_variant`).

One exposure per assigned request (experiment, variant, unit, request id, response id, tenant) is
queued in memory and written in batches by :meth:`ExposureWriter.run`: the request never waits on the
database; when the queue is full the exposure is dropped and counted (``dropped``). The observer
hears ``assigned(experiment, variant)``, which the HTTP edge returns as the ``x-modelyard-experiment``
header (``<experiment>:<variant>``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson

from modelyard.experiments.assignment import assign
from modelyard.experiments.records import Experiment, Variant
from modelyard.experiments.store import ExperimentStore, Exposure
from modelyard.gateway.backends.base import Endpoint, ParsedRequest
from modelyard.monitoring.observer import NULL_OBSERVER, RequestObserver
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest
from modelyard.registry.service import Registry

log = logging.getLogger("modelyard.experiments")
EXPERIMENT_HEADER = "x-modelyard-experiment"
request_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "modelyard_request_headers", default=None
)  # set by the HTTP edge: the ``header:NAME`` unit reads it


class ExperimentBook:
    """The running experiments by route, reloaded when the registry revision moves."""

    def __init__(self, registry: Registry, store: ExperimentStore) -> None:
        self._registry = registry
        self.store = store
        self.revision = -1
        self._by_route: dict[tuple[str, str], list[Experiment]] = {}

    def refresh(self) -> bool:
        revision = self._registry.revision()
        if revision == self.revision:
            return False
        by_route: dict[tuple[str, str], list[Experiment]] = {}
        for e in self.store.active():
            by_route.setdefault((e.route_kind, e.route), []).append(e)
        self._by_route, self.revision = by_route, revision
        return True

    async def poll(self, interval_s: float) -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:
                log.warning("experiment refresh failed; keeping revision %s", self.revision, exc_info=True)
            await asyncio.sleep(interval_s)

    def running(self) -> list[Experiment]:
        return [e for exps in self._by_route.values() for e in exps]

    def on_route(self, kind: str, route: str) -> list[Experiment]:
        return self._by_route.get((kind, route), [])


class ExposureWriter:
    """A bounded in-memory queue of exposures, flushed to the store in batches."""

    def __init__(self, store: ExperimentStore, max_queue: int = 10_000, flush_s: float = 0.5) -> None:
        self.store = store
        self.max_queue = max_queue
        self.flush_s = flush_s
        self.pending: list[Exposure] = []
        self.dropped = 0
        self.written = 0
        self.counts: dict[tuple[str, str], int] = {}  # (experiment, variant) -> exposures in this process

    def add(self, exposure: Exposure) -> None:
        if len(self.pending) >= self.max_queue:
            self.dropped += 1
            return
        key = (exposure.experiment_id, exposure.variant)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.pending.append(exposure)

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.store.record_exposures(batch)
        self.written += len(batch)

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_s)
                if self.pending:
                    try:
                        await anyio.to_thread.run_sync(self.flush)
                    except Exception:
                        log.warning("writing exposures failed; they are lost", exc_info=True)
        finally:
            if self.pending:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.flush)


@dataclass(slots=True)
class Assignment:
    experiment: Experiment
    variant: Variant
    unit: str
    parsed: ParsedRequest
    body: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.experiment.id}:{self.variant.name}"


def _principal() -> Any:
    from modelyard.tenancy.gateway import current_principal

    return current_principal.get()


def unit_value(unit: str, body: Mapping[str, Any], request_id: str) -> str | None:
    """The value hashed for ``unit`` in the current request, or None when it has none."""
    if unit == "request":
        return request_id
    if unit == "user":
        user = body.get("user")
        return user if isinstance(user, str) and user else None
    if unit.startswith("header:"):
        headers = request_headers.get()
        return (headers.get(unit[7:]) or None) if headers is not None else None
    p = _principal()
    if p is None:
        return None
    return p.tenant_id if unit == "tenant" else p.key_id


def flag_variant(exp: Experiment, unit: str) -> str | None:
    """The variant the OpenFeature string flag ``exp.flag`` names for ``unit`` (the targeting key),
    through whatever provider the process set (``openfeature.api.set_provider``); None when the flag
    names no variant of ``exp``, is off, or the SDK is missing (the request passes through)."""
    try:
        from openfeature import api
        from openfeature.evaluation_context import EvaluationContext
    except ImportError:
        return None
    assert exp.flag is not None
    value = api.get_client("modelyard").get_string_value(exp.flag, "", EvaluationContext(targeting_key=unit))
    return value if any(v.name == value for v in exp.variants) else None


def apply_variant(body: dict[str, Any], variant: Variant) -> dict[str, Any]:
    """``body`` with ``variant``'s overrides: model/adapter replaced, prompt version and parameters
    filled only where the request leaves them unset."""
    out = dict(body)
    if variant.model or variant.adapter:
        out["model"] = variant.model or variant.adapter
    prompt = out.get("prompt")
    if variant.prompt_version is not None and isinstance(prompt, dict) and prompt.get("version") is None:
        out["prompt"] = {**prompt, "version": variant.prompt_version}
    for name, value in variant.params.items():
        if name in ("max_tokens", "max_completion_tokens") and (
            out.get("max_tokens") is not None or out.get("max_completion_tokens") is not None
        ):
            continue
        if out.get(name) is None:
            out[name] = value
    return out


class ExperimentLayer:
    """Wraps the next layer with the same interface; what it does not change is delegated."""

    def __init__(self, inner: Any, book: ExperimentBook, writer: ExposureWriter) -> None:
        self.inner = inner
        self.book = book
        self.writer = writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @classmethod
    async def build(cls, inner: Any, registry: Registry, max_queue: int = 10_000) -> ExperimentLayer:
        store = ExperimentStore(registry.engine)
        book = ExperimentBook(registry, store)
        await anyio.to_thread.run_sync(book.refresh)
        return cls(inner, book, ExposureWriter(store, max_queue))

    def assign(
        self, endpoint: Endpoint, parsed: ParsedRequest, body: dict[str, Any], request_id: str = ""
    ) -> Assignment | None:
        """The request's assignment, or None. Never blocks."""
        if endpoint not in (Endpoint.CHAT, Endpoint.COMPLETIONS):
            return None
        prompt = body.get("prompt")
        if isinstance(prompt, dict):
            route = ("prompt", str(prompt.get("id")))
        else:
            route = ("model", str(body.get("model")))
        p = _principal()
        tenant = p.tenant_id if p is not None else None
        for exp in self.book.on_route(*route):
            if exp.tenant is not None and exp.tenant != tenant:
                continue
            unit = unit_value(exp.unit, body, request_id)
            if unit is None:
                continue
            if exp.flag is not None:
                name = flag_variant(exp, unit)
            else:
                name = assign(exp.salt, unit, exp.layout, exp.traffic_percent)
            if name is None:
                continue
            variant = exp.variant(name)
            out = apply_variant(body, variant)
            model = ChatCompletionRequest if endpoint is Endpoint.CHAT else CompletionRequest
            return Assignment(exp, variant, unit, model.model_validate(out), out)
        return None

    def _expose(self, a: Assignment, request_id: str, response_id: str | None) -> None:
        p = _principal()
        self.writer.add(
            Exposure(
                a.experiment.id, a.variant.name, a.unit, request_id, response_id,
                p.tenant_id if p is not None else None, datetime.now(UTC),
            )
        )  # fmt: skip

    async def complete(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> bytes:
        a = self.assign(endpoint, parsed, body, request_id)
        if a is None:
            return await self.inner.complete(endpoint, parsed, body, request_id, observer)  # type: ignore[no-any-return]
        _tell(observer, a)
        response_id = None
        try:
            out: bytes = await self.inner.complete(endpoint, a.parsed, a.body, request_id, observer)
            response_id = _response_id(out)
            return out
        finally:
            self._expose(a, request_id, response_id)

    async def open_stream(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> Any:
        a = self.assign(endpoint, parsed, body, request_id)
        if a is None:
            return await self.inner.open_stream(endpoint, parsed, body, request_id, observer)
        _tell(observer, a)
        try:
            handle = await self.inner.open_stream(endpoint, a.parsed, a.body, request_id, observer)
        except BaseException:
            self._expose(a, request_id, None)
            raise
        return ExposedStream(handle, lambda rid: self._expose(a, request_id, rid))


def _tell(observer: Any, a: Assignment) -> None:
    assigned = getattr(observer, "assigned", None)
    if assigned is not None:
        assigned(a.experiment.id, a.variant.name)


def _response_id(payload: bytes) -> str | None:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    rid = data.get("id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) else None


class ExposedStream:
    """A stream handle that records its exposure once: at the first payload (with the response id),
    or when it ends or closes without one."""

    def __init__(self, inner: Any, expose: Any) -> None:
        self._inner = inner
        self._expose: Any = expose

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    def _once(self, response_id: str | None) -> None:
        if self._expose is not None:
            expose, self._expose = self._expose, None
            expose(response_id)

    async def __anext__(self) -> bytes:
        try:
            payload: bytes = await self._inner.__anext__()
        except BaseException:
            self._once(None)
            raise
        if self._expose is not None:
            self._once(_response_id(payload))
        return payload

    async def aclose(self) -> None:
        self._once(None)
        await self._inner.aclose()
