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
    """200 once every deployment can take requests, else 503; the body lists each one either way.

    ``deployments`` maps each deployment to whether it is ready; ``models`` lists the background
    loads (local models and embedders) with ``state`` (``loading`` / ``ready`` / ``failed``),
    ``waited_s`` (for a load slot), ``load_s`` (so far, or in all) and ``error``.
    """
    gateway: Gateway = request.state.gateway
    deployments = {d.name: d.backend.ready() for d in gateway.router.deployments()}
    loader = request.state.services.loader
    failed = loader.failed if loader is not None else {}
    loaded = loader is None or loader.done
    ok = all(deployments.values()) and loaded and not failed
    body = {
        "ready": ok,
        "deployments": deployments,
        "models": loader.states() if loader is not None else [],
        "failed": failed,
    }
    return _json(body, 200 if ok else 503)


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
