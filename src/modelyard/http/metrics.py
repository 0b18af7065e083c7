"""``GET /metrics``: Prometheus text exposition of the gateway's and the engines' metrics.

Engine gauges and counters (``vllm:*``) are read from the engines at scrape time; see
:mod:`modelyard.monitoring.metrics` for every family.
"""

from __future__ import annotations

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.monitoring.monitor import Monitor


async def metrics(request: Request) -> Response:
    monitor: Monitor = request.state.monitor
    body = await anyio.to_thread.run_sync(monitor.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
