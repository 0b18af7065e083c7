"""The worker's small HTTP face for Kubernetes and Prometheus: ``/health``, ``/ready``, ``/metrics``.

``/ready`` answers 200 once the models are loaded and 503 while draining, so a pod that is being
scaled in leaves its Service at once. ``/metrics`` exposes the engine gauges under vLLM's names
(``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``) so the
Prometheus-adapter HPA in ``deploy/k8s/alternatives/`` can scale on them, plus the worker's own
in-flight and served counts. A plain asyncio server: GET only, no keep-alive, no body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

_MAX_REQUEST_LINE = 4096


def render_metrics(
    worker_id: str, models: dict[str, dict[str, Any]], in_flight: int, served: int, queue_wait: Any = None
) -> bytes:
    """Prometheus text format for ``models`` (model name -> backend ``stats()``); ``queue_wait`` is the
    worker's ``QueueWaitHistogram`` (enqueue to pick-up), exported as ``vllm:request_queue_time_seconds``."""
    lines = []
    gauges = (
        ("vllm:num_requests_running", "num_running", "Requests in the engine's running batch."),
        ("vllm:num_requests_waiting", "num_waiting", "Requests waiting in the engine's scheduler."),
        ("vllm:kv_cache_usage_perc", "kv_cache_usage", "Fraction of KV-cache blocks in use (0-1)."),
    )
    for name, key, help_text in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for model, stats in models.items():
            lines.append(f'{name}{{model_name="{model}",worker="{worker_id}"}} {float(stats.get(key, 0))}')
    lines += [
        "# HELP modelyard_worker_in_flight Queued requests this worker is serving.",
        "# TYPE modelyard_worker_in_flight gauge",
        f'modelyard_worker_in_flight{{worker="{worker_id}"}} {in_flight}',
        "# HELP modelyard_worker_served_total Queued requests this worker finished.",
        "# TYPE modelyard_worker_served_total counter",
        f'modelyard_worker_served_total{{worker="{worker_id}"}} {served}',
    ]
    if queue_wait is not None:
        name, label = "vllm:request_queue_time_seconds", f'worker="{worker_id}"'
        lines += [
            f"# HELP {name} Time from enqueue to a worker picking the request up.",
            f"# TYPE {name} histogram",
        ]
        for bound, n in zip(queue_wait.BUCKETS, queue_wait.counts, strict=True):
            lines.append(f'{name}_bucket{{{label},le="{bound}"}} {n}')
        lines += [
            f'{name}_bucket{{{label},le="+Inf"}} {queue_wait.count}',
            f"{name}_sum{{{label}}} {queue_wait.sum}",
            f"{name}_count{{{label}}} {queue_wait.count}",
        ]
    return ("\n".join(lines) + "\n").encode()


async def serve_http(
    host: str, port: int, *, ready: Callable[[], bool], metrics: Callable[[], bytes]
) -> asyncio.Server:
    """Start the server; close it with ``server.close()``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line[:_MAX_REQUEST_LINE].decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if path == "/health":
                status, body, ctype = 200, b'{"status":"ok"}', "application/json"
            elif path == "/ready":
                ok = ready()
                status, body, ctype = (
                    (200 if ok else 503),
                    b'{"ready":%s}' % (b"true" if ok else b"false"),
                    "application/json",
                )
            elif path == "/metrics":
                status, body, ctype = 200, metrics(), "text/plain; version=0.0.4"
            else:
                status, body, ctype = 404, b'{"error":"not found"}', "application/json"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
