"""Operational endpoints: ``/health`` (liveness), ``/ready`` (every model loaded), ``/stats``."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.gateway.pipeline import Gateway


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def health(request: Request) -> Response:
    return _json({"status": "ok"})


async def ready(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    models = {d.name: d.backend.ready() for d in gateway.router.deployments()}
    services = request.state.services
    ok = all(models.values()) and not services.failed and not services.loading
    return _json({"ready": ok, "deployments": models, "failed": services.failed}, 200 if ok else 503)


async def stats(request: Request) -> Response:
    """Router and backend state per deployment (in-flight, breaker, EWMA TTFT, engine counters)."""
    gateway: Gateway = request.state.gateway
    deployments = [
        {
            "name": d.name,
            "model": d.backend.model,
            "in_flight": d.in_flight,
            "served": d.served,
            "errors": d.errors,
            "breaker": d.state.value,
            "ewma_ttft_ms": None if d.ewma_ttft_s is None else round(d.ewma_ttft_s * 1000, 3),
            "backend": d.backend.stats(),
        }
        for d in gateway.router.deployments()
    ]
    return _json(
        {
            "active_streams": gateway.active_streams,
            "policy": gateway.router.policy.value,
            "deployments": deployments,
        }
    )


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/stats", stats, methods=["GET"]),
]
