"""``create_app(settings)``: the ASGI app, with every service built in its lifespan.

Services live in the lifespan state (``request.state.gateway`` / ``.services``), never in module
globals. Remote deployments are ready when the app starts; local models and embedders load in
the background, concurrently (:class:`~modelyard.gateway.loading.ModelLoader`): each takes
requests as soon as it is loaded, and ``/ready`` answers 503, listing each one's state, until all
are. On shutdown in-flight streams drain for up to ``drain_timeout_s`` before backends close;
:func:`stop_services` returns within ``drain_timeout_s + CLOSE_BOUND_S`` (see ``docs/scale-out.md``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from modelyard.aio import cancel_and_wait
from modelyard.gateway.backends.base import Backend
from modelyard.gateway.backends.embedding import EmbeddingBackend
from modelyard.gateway.backends.openai_compat import OpenAICompatBackend
from modelyard.gateway.loading import ModelLoader
from modelyard.gateway.pipeline import Gateway
from modelyard.gateway.resolver import RegistryResolver
from modelyard.gateway.router import Router
from modelyard.http import logs as logs_http
from modelyard.http import metrics as metrics_http
from modelyard.http import ops, ws
from modelyard.http.errors import EXCEPTION_HANDLERS
from modelyard.http.middleware import BodyLimitMiddleware, RequestIdMiddleware
from modelyard.http.openai import chat, completions, embeddings, feedback, models
from modelyard.jobs.credentials import Credentials
from modelyard.settings import Settings
from modelyard.tenancy.auth import AuthMiddleware

log = logging.getLogger("modelyard")

CLOSE_BOUND_S = 10.0  # after the drain, closing everything takes at most this (the rest is abandoned)


@dataclass(slots=True)
class Services:
    """Everything one running server owns."""

    settings: Settings
    gateway: Any  # the outermost layer; each offers Gateway's interface
    backends: list[Backend]
    registry: Any
    loader: ModelLoader | None = None  # the background loads of local models and embedders
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)
    monitor: Any = None
    tenancy: Any = None
    prompts: Any = None  # the prompt layer's PromptBook (admin writes refresh it)
    experiments: Any = None  # the experiment layer (its book: admin writes refresh it; its writer)
    jobs: Any = None  # modelyard.jobs.service.JobService
    rag: Any = None  # modelyard.rag.runtime.RagRuntime: its store and embedders open on first use
    credentials: Credentials = field(default_factory=Credentials)  # submitters' keys for jobs, memory only


def _build_backends(settings: Settings) -> tuple[list[tuple[Backend, float]], list[Backend]]:
    """(backends started before serving, with weights) and (backends loaded in the background)."""
    eager: list[tuple[Backend, float]] = []
    for i, dep in enumerate(settings.deployments):
        eager.append((OpenAICompatBackend(dep, dep.name or f"{dep.model}#{i}"), dep.weight))
    lazy: list[Backend] = []
    for emb in settings.embedders:
        from modelyard.embeddings import Embedder, load_embedder, resolve_source

        def load(src: str = emb.source, batch: int = emb.max_batch) -> Embedder:
            return load_embedder(src, max_batch=batch)

        artifact = str(resolve_source(emb.source))
        lazy.append(EmbeddingBackend(f"{emb.name}#local", emb.name, load, artifact))
    if settings.queue.backend == "redis":  # local models are served by `modelyard worker` processes
        from modelyard.queue.factory import queued_backends

        eager.extend((b, 1.0) for b in queued_backends(settings))
        return eager, lazy
    for lm in settings.local_models:
        from modelyard.gateway.backends.local import LocalBackend

        lazy.append(LocalBackend(lm, settings))
    return eager, lazy


async def start_services(settings: Settings) -> Services:
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    router = Router(
        settings.router.policy,
        settings.circuit_breaker,
        ewma_alpha=settings.router.ewma_alpha,
        fallbacks=settings.fallbacks,
        load_cap=settings.router.load_cap,
    )
    eager, lazy = _build_backends(settings)
    for backend, weight in eager:
        await backend.start()
        router.add(backend, weight)
    for backend in lazy:
        router.add(backend)
    from modelyard.registry.service import Registry

    registry = Registry(settings.resolved_database_url)
    await anyio.to_thread.run_sync(registry.migrate)
    resolver = RegistryResolver(registry, router)
    from modelyard.registry.defaults import DefaultsBook

    defaults = DefaultsBook(registry, {lm.name: lm.sampling_defaults() for lm in settings.local_models})
    await anyio.to_thread.run_sync(defaults.refresh)
    from modelyard.tenancy.gateway import TenantGateway
    from modelyard.tenancy.service import start_tenancy

    tenancy = await start_tenancy(settings) if settings.tenancy.enabled else None
    gateway: Gateway = (
        TenantGateway(router, resolver, settings.limits, defaults, tenancy=tenancy)
        if tenancy is not None
        else Gateway(router, resolver, settings.limits, defaults)
    )
    from modelyard.registry.prompt_layer import PromptLayer

    prompted = await PromptLayer.build(gateway, registry)  # layer 4: prompt references rendered
    from modelyard.rag.runtime import RagRuntime

    rag = RagRuntime(settings, registry.engine)  # its store and embedders open on first use
    retrieving: Any = prompted
    if settings.rag.bundles:  # layer 3: RAG bundles retrieve, then go on to their generator
        from modelyard.rag.layer import RagLayer

        retrieving = RagLayer(prompted, settings.rag.bundles, rag)
    from modelyard.experiments.layer import ExperimentLayer

    experimented = await ExperimentLayer.build(  # layer 2: experiment assignment and exposures
        retrieving, registry, settings.experiments.max_exposure_queue
    )
    outer: Any = experimented
    if settings.experiments.shadows:  # layer 1: the shadow mirror, replaying through the pipeline
        from modelyard.experiments.shadow import ShadowLayer

        routes = {s.route: (tuple(s.targets), s.percent) for s in settings.experiments.shadows}
        outer = ShadowLayer(experimented, gateway, routes, settings.experiments.max_shadow_queue)
    services = Services(settings, outer, [b for b, _ in eager] + lazy, registry, tenancy=tenancy)
    services.prompts = prompted.book
    services.experiments = experimented
    services.rag = rag
    services.closers.append(rag.close)
    services.closers.append(registry.close)
    from modelyard.monitoring.monitor import Monitor

    services.monitor = Monitor(settings, services.gateway)
    services.monitor.start()
    from modelyard.experiments.metrics import ExperimentCollector

    services.monitor.metrics.registry.register(ExperimentCollector(experimented))
    from modelyard.monitoring.drift.metrics import DriftCollector
    from modelyard.monitoring.drift.store import DriftStore

    services.monitor.metrics.registry.register(DriftCollector(DriftStore(registry.engine)))
    from modelyard.jobs.catalog import known_kinds, known_tasks
    from modelyard.jobs.service import start_jobs

    services.jobs = await start_jobs(
        settings, known_kinds(settings, services.credentials), known_tasks(settings)
    )
    services.tasks.append(asyncio.create_task(resolver.poll(settings.registry_poll_s), name="registry-poll"))
    services.tasks.append(asyncio.create_task(defaults.poll(settings.registry_poll_s), name="defaults-poll"))
    services.tasks.append(
        asyncio.create_task(prompted.book.poll(settings.registry_poll_s), name="prompts-poll")
    )
    services.tasks.append(
        asyncio.create_task(experimented.book.poll(settings.registry_poll_s), name="experiments-poll")
    )
    services.tasks.append(asyncio.create_task(experimented.writer.run(), name="exposure-writer"))
    if outer is not experimented:
        services.tasks.append(asyncio.create_task(outer.run(), name="shadow-mirror"))

    async def register(backend: Backend) -> None:
        fields = getattr(backend, "registry_fields", None)
        if fields is None:
            return
        f = fields()
        resolved = await anyio.to_thread.run_sync(lambda: registry.ensure_model(backend.model, **f))
        resolver.serving(backend.model, resolved.artifact_uri)
        await anyio.to_thread.run_sync(defaults.refresh)  # the new version's artifact defaults, now

    if lazy:
        services.loader = ModelLoader(lazy, concurrency=settings.load_concurrency, on_ready=register)
        services.tasks.append(asyncio.create_task(services.loader.run(), name="load-local-models"))
    return services


async def stop_services(services: Services) -> None:
    """Stop the jobs, drain (up to ``drain_timeout_s``), then close everything within ``CLOSE_BOUND_S``."""
    if services.jobs is not None:  # first: a running job would keep sending requests through the drain
        await services.jobs.stop()
    drained = await services.gateway.drain(services.settings.drain_timeout_s)
    if not drained:
        log.warning(
            "%d streams still open after %.0fs; closing anyway",
            services.gateway.active_streams,
            services.settings.drain_timeout_s,
        )
    closing = asyncio.create_task(_close_services(services), name="close-services")
    done, _ = await asyncio.wait({closing}, timeout=CLOSE_BOUND_S - 1.0)
    if not done:
        log.error("closing the services took over %.0fs; abandoning the rest", CLOSE_BOUND_S - 1.0)
    await cancel_and_wait([closing], 1.0, what="service closes")
    if done:
        closing.result()


async def _close_services(services: Services) -> None:
    if services.monitor is not None:
        await services.monitor.stop()
    await cancel_and_wait(services.tasks, 2.0, what="gateway tasks")

    async def close_backend(backend: Backend) -> None:
        try:
            await backend.close()
        except Exception:
            log.exception("closing %s failed", backend.name)

    await asyncio.gather(*(close_backend(b) for b in services.backends))  # each bounded on its own
    if services.tenancy is not None:
        await services.tenancy.close()  # after the drain: every stream has settled its usage
    for close in services.closers:
        close()


def create_app(settings: Settings) -> Starlette:
    """The modelyard ASGI app for ``settings``; nothing starts until the lifespan runs."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = await start_services(settings)
        gc.freeze()  # start-up objects live for good: keep them out of every full GC pass (p99)
        try:
            yield {
                "gateway": services.gateway,
                "services": services,
                "registry": services.registry,
                "monitor": services.monitor,
                "tenancy": services.tenancy,
                "prompt_book": services.prompts,
                "experiment_book": services.experiments.book,
                "experiment_layer": services.experiments,
                "jobs": services.jobs,
                "rag": services.rag,
                "started_at": int(time.time()),
            }
        finally:
            await stop_services(services)

    from modelyard.http.admin import create_admin_app

    routes = [
        *chat.routes,
        *completions.routes,
        *embeddings.routes,
        *feedback.routes,
        *models.routes,
        *ops.routes,
        *metrics_http.routes,
        *logs_http.routes,
        *ws.routes,
        Mount("/admin", app=create_admin_app(EXCEPTION_HANDLERS)),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(AuthMiddleware),
            Middleware(BodyLimitMiddleware, max_body_bytes=settings.limits.max_body_bytes),
        ],
    )
