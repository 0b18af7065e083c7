"""Background loading of local deployments (engine models, embedders) and each one's load state.

:class:`ModelLoader` starts the lazy backends concurrently, at most ``concurrency`` at a time, in
configuration order, each in a worker thread (torch releases the GIL for the heavy parts: weight
copies, dequantisation, packing). A deployment takes requests as soon as its own load finishes;
``/ready`` answers 200 only once every load is done and none failed, and lists each deployment's
:class:`ModelLoad` (state and timings) meanwhile.

A request for a model none of whose deployments is ready gets :func:`not_ready_error`: 503
``model_loading`` with ``Retry-After`` while a load is still running, 503 ``model_load_failed``
(no ``Retry-After``) when every load failed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio

from modelyard.errors import ModelLoadFailed, ModelLoading, OverCapacity

log = logging.getLogger("modelyard")

LOADING_RETRY_AFTER_S = 2.0
"""``Retry-After`` sent for a model that is still loading when no estimate of the time left exists."""


# What every engine model's load needs from transformers, imported before the loads start (the
# rest of what a load imports goes through modelyard.imports.import_names, one thread at a time).
SHARED_IMPORTS = (("transformers", ("PreTrainedTokenizerFast",)),)


def import_shared_modules() -> None:
    """Import :data:`SHARED_IMPORTS` (blocking); a package that is missing is left to its load to report."""
    from modelyard.imports import import_names

    for module_name, names in SHARED_IMPORTS:
        try:
            import_names(module_name, *names)
        except (ImportError, AttributeError):
            continue


class LoadState(enum.StrEnum):
    LOADING = "loading"  # waiting for a load slot, or loading now
    READY = "ready"
    FAILED = "failed"


@dataclass(slots=True)
class ModelLoad:
    """One deployment's load: state, when it started and finished (``time.monotonic``), the error."""

    deployment: str
    model: str
    state: LoadState = LoadState.LOADING
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        end = self.finished_at if self.finished_at is not None else now
        return {
            "deployment": self.deployment,
            "model": self.model,
            "state": self.state.value,
            "waited_s": round((self.started_at if self.started_at is not None else end) - self.queued_at, 3),
            "load_s": None if self.started_at is None else round(end - self.started_at, 3),
            "error": self.error,
        }


@runtime_checkable
class Loadable(Protocol):
    """Optional for a :class:`~modelyard.gateway.backends.base.Backend` whose ``start`` loads weights in
    the background: ``load`` is its :class:`ModelLoad`, kept up to date by :class:`ModelLoader`."""

    load: ModelLoad


class ModelLoader:
    """Runs ``backend.start()`` for every backend, ``concurrency`` at a time, and records each state.

    ``on_ready(backend)`` runs after each successful load (registry bookkeeping); its failures are
    logged and do not fail the load.
    """

    def __init__(
        self,
        backends: Sequence[Any],
        *,
        concurrency: int,
        on_ready: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self._backends = list(backends)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._on_ready = on_ready
        self._bookkeeping = asyncio.Lock()  # one registry write at a time (SQLite)
        now = time.monotonic()
        self.loads: dict[str, ModelLoad] = {}
        for backend in self._backends:
            load = backend.load if isinstance(backend, Loadable) else ModelLoad(backend.name, backend.model)
            load.queued_at = now
            self.loads[backend.name] = load

    @property
    def done(self) -> bool:
        return all(load.state is not LoadState.LOADING for load in self.loads.values())

    @property
    def failed(self) -> dict[str, str]:
        return {name: load.error or "" for name, load in self.loads.items() if load.state is LoadState.FAILED}

    def states(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [load.to_json(now) for load in self.loads.values()]

    async def run(self) -> None:
        if len(self._backends) > 1:
            await anyio.to_thread.run_sync(import_shared_modules)
        await asyncio.gather(*(self._load_one(b) for b in self._backends))

    async def _load_one(self, backend: Any) -> None:
        load = self.loads[backend.name]
        async with self._slots:
            load.started_at = time.monotonic()
            try:
                await backend.start()
            except Exception as exc:
                load.finished_at = time.monotonic()
                load.error = f"{type(exc).__name__}: {exc}"
                load.state = LoadState.FAILED
                log.exception("deployment %s failed to load", backend.name)
                return
            load.finished_at = time.monotonic()
            load.state = LoadState.READY
            log.info("deployment %s ready in %.1fs", backend.name, load.finished_at - load.started_at)
        if self._on_ready is not None:
            try:
                async with self._bookkeeping:
                    await self._on_ready(backend)
            except Exception:
                log.exception("post-load bookkeeping for %s failed", backend.name)


def not_ready_error(model: str, backends: Iterable[Any]) -> OverCapacity:
    """The error for a request to ``model`` when none of ``backends`` is ready."""
    loads = [b.load for b in backends if isinstance(b, Loadable)]
    if loads and all(load.state is LoadState.FAILED for load in loads):
        return ModelLoadFailed(
            f"model `{model}` failed to load ({loads[0].error}); see the server log and GET /ready",
            param="model",
        )
    return ModelLoading(
        f"model `{model}` is still loading; retry after {LOADING_RETRY_AFTER_S:g}s (GET /ready shows progress)",
        retry_after_s=LOADING_RETRY_AFTER_S,
    )
