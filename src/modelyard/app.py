"""``create_app(settings)``: the ASGI app, with every service built in its lifespan.

Services live in the lifespan state (``request.state.gateway`` / ``.services``), never in module
globals. Remote deployments are ready when the app starts; local models and embedders load in
the background (``/ready`` answers 503 until they have). On shutdown in-flight streams drain for
up to ``drain_timeout_s`` before backends close.
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

from modelyard.gateway.backends.base import Backend
from modelyard.gateway.backends.embedding import EmbeddingBackend
from modelyard.gateway.backends.openai_compat import OpenAICompatBackend
from modelyard.gateway.pipeline import Gateway
from modelyard.gateway.resolver import RegistryResolver
from modelyard.gateway.router import Router
from modelyard.http import logs as logs_http
from modelyard.http import metrics as metrics_http
from modelyard.http import ops, ws
from modelyard.http.errors import EXCEPTION_HANDLERS
from modelyard.http.middleware import BodyLimitMiddleware, RequestIdMiddleware
from modelyard.http.openai import chat, completions, embeddings, models
from modelyard.settings import Settings
from modelyard.tenancy.auth import AuthMiddleware

log = logging.getLogger("modelyard")


@dataclass(slots=True)
class Services:
    """Everything one running server owns."""

    settings: Settings
    gateway: Gateway
    backends: list[Backend]
    registry: Any
    failed: dict[str, str] = field(default_factory=dict)
    loading: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)
    monitor: Any = None
    tenancy: Any = None


def _build_backends(settings: Settings) -> tuple[list[tuple[Backend, float]], list[Backend]]:
    """(backends started before serving, with weights) and (backends loaded in the background)."""
    eager: list[tuple[Backend, float]] = []
    for i, dep in enumerate(settings.deployments):
        eager.append((OpenAICompatBackend(dep, dep.name or f"{dep.model}#{i}"), dep.weight))
    lazy: list[Backend] = []
    for emb in settings.embedders:
        from modelyard.embeddings import SentenceTransformerEmbedder, resolve_source

        def load(src: str = emb.source, batch: int = emb.max_batch) -> SentenceTransformerEmbedder:
            return SentenceTransformerEmbedder(src, max_batch=batch)

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
    from modelyard.tenancy.gateway import TenantGateway
    from modelyard.tenancy.service import start_tenancy

    tenancy = await start_tenancy(settings) if settings.tenancy.enabled else None
    gateway: Gateway = (
        TenantGateway(router, resolver, settings.limits, tenancy=tenancy)
        if tenancy is not None
        else Gateway(router, resolver, settings.limits)
    )
    services = Services(settings, gateway, [b for b, _ in eager] + lazy, registry, tenancy=tenancy)
    services.closers.append(registry.close)
    from modelyard.monitoring.monitor import Monitor

    services.monitor = Monitor(settings, services.gateway)
    services.monitor.start()
    services.tasks.append(asyncio.create_task(resolver.poll(settings.registry_poll_s), name="registry-poll"))

    async def load(backend: Backend) -> None:
        try:
            await backend.start()
        except Exception as exc:
            log.exception("deployment %s failed to load", backend.name)
            services.failed[backend.name] = f"{type(exc).__name__}: {exc}"
            return
        log.info("deployment %s ready", backend.name)
        fields = getattr(backend, "registry_fields", None)
        if fields is None:
            return
        try:
            f = fields()
            resolved = await anyio.to_thread.run_sync(lambda: registry.ensure_model(backend.model, **f))
            resolver.serving(backend.model, resolved.artifact_uri)
        except Exception:
            log.exception("registering %s in the model registry failed", backend.model)

    async def load_all() -> None:
        # One at a time: loads are CPU-bound and share the machine with the server.
        for backend in lazy:
            await load(backend)
        services.loading = False

    if lazy:
        services.loading = True
        services.tasks.append(asyncio.create_task(load_all(), name="load-local-models"))
    return services


async def stop_services(services: Services) -> None:
    drained = await services.gateway.drain(services.settings.drain_timeout_s)
    if not drained:
        log.warning(
            "%d streams still open after %.0fs; closing anyway",
            services.gateway.active_streams,
            services.settings.drain_timeout_s,
        )
    if services.monitor is not None:
        await services.monitor.stop()
    for task in services.tasks:
        task.cancel()
    await asyncio.gather(*services.tasks, return_exceptions=True)
    for backend in services.backends:
        try:
            await backend.close()
        except Exception:
            log.exception("closing %s failed", backend.name)
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
                "started_at": int(time.time()),
            }
        finally:
            await stop_services(services)

    from modelyard.http.admin import create_admin_app

    routes = [
        *chat.routes,
        *completions.routes,
        *embeddings.routes,
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
