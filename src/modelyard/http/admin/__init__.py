"""Admin REST API, served under ``/admin``: model registry management.

:data:`models_router` is a FastAPI ``APIRouter`` (prefix ``/models``). FastAPI routes only run
inside a FastAPI app, so a Starlette host mounts :func:`create_admin_app` instead::

    Mount("/admin", app=create_admin_app(EXCEPTION_HANDLERS))

and hands the registry over through lifespan state (``yield {"registry": registry}``) or by
setting ``admin_app.state.registry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from modelyard.http.admin.models import router as models_router

__all__ = ["create_admin_app", "models_router"]


def create_admin_app(exception_handlers: Mapping[Any, Any] | None = None) -> FastAPI:
    """A FastAPI app with every admin router, using the host app's exception handlers."""
    app = FastAPI(
        title="modelyard admin",
        exception_handlers=dict(exception_handlers or {}),
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.include_router(models_router)
    from modelyard.http.admin import adapters, jobs, keys, prompts, tenants, usage

    for module in (tenants, keys, adapters, usage, prompts, jobs):
        app.include_router(module.router)
    from modelyard.http.admin import evals, experiments

    app.include_router(evals.router)
    app.include_router(experiments.router)
    app.include_router(experiments.shadows_router)
    from modelyard.http.admin import drift

    app.include_router(drift.router)
    from modelyard.rag.admin_api import router as rag_router  # imports no vector store client

    app.include_router(rag_router)
    return app
