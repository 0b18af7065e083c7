"""``modelyard worker --jobs KIND[,KIND]``: run jobs of those kinds from Redis Streams.

With ``--http-port`` it serves ``/health``, ``/ready`` (200 once it reads its streams) and ``/metrics``
(``modelyard_job_worker_running``, ``modelyard_job_worker_finished_total{kind,state}``) for Kubernetes.

Consumes ``{prefix}:jobs:{kind}`` (see :mod:`modelyard.jobs.redis_queue`) with ``jobs.concurrency``
jobs at once. On SIGTERM/SIGINT it stops: running handlers are cancelled, their rows stay
``running`` and go stale, and a live worker reclaims them after ``jobs.visibility_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from modelyard.errors import ConfigError
from modelyard.jobs.catalog import known_kinds
from modelyard.jobs.redis_queue import RedisJobConsumer
from modelyard.jobs.service import default_worker_id, load_kinds, runner_config
from modelyard.jobs.store import JobStore
from modelyard.settings import Settings

log = logging.getLogger("modelyard.jobs")


def render_metrics(consumer: RedisJobConsumer) -> bytes:
    """Prometheus text: jobs running on this worker and jobs it finished, by kind and final state."""
    w = consumer.worker_id
    lines = [
        "# HELP modelyard_job_worker_running Jobs this worker is running.",
        "# TYPE modelyard_job_worker_running gauge",
        f'modelyard_job_worker_running{{worker="{w}"}} {consumer.in_flight}',
        "# HELP modelyard_job_worker_finished_total Jobs this worker ran to an end, by kind and state.",
        "# TYPE modelyard_job_worker_finished_total counter",
    ]
    for (kind, state), n in sorted(consumer.finished.items()):
        lines.append(f'modelyard_job_worker_finished_total{{worker="{w}",kind="{kind}",state="{state}"}} {n}')
    return ("\n".join(lines) + "\n").encode()


async def serve_job_worker(
    settings: Settings,
    kinds: list[str],
    worker_id: str | None,
    ready_file: Path | None = None,
    http_port: int | None = None,
) -> None:
    if settings.queue.backend != "redis":
        raise ConfigError("`modelyard worker --jobs` needs queue.backend=redis (local jobs run in `serve`)")
    available = load_kinds(settings, known_kinds(settings))
    unknown = sorted(set(kinds) - set(available))
    if unknown:
        raise ConfigError(f"unknown job kinds {unknown}; known: {sorted(available)}")
    store = JobStore(settings.resolved_database_url)
    await asyncio.to_thread(store.migrate)
    consumer = RedisJobConsumer(
        settings.queue.redis_url,
        key_prefix=settings.queue.key_prefix,
        store=store,
        kinds={k: available[k] for k in kinds},
        cfg=runner_config(settings),
        concurrency=settings.jobs.concurrency,
        worker_id=worker_id or default_worker_id(),
    )
    task = asyncio.create_task(consumer.run(), name="job-consumer")
    server = None
    if http_port is not None:
        from modelyard.queue.worker_http import serve_http

        server = await serve_http(
            "0.0.0.0", http_port, ready=lambda: consumer.ready, metrics=lambda: render_metrics(consumer)
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    while not consumer.ready and not task.done():  # the ready file means "reading its streams"
        await asyncio.sleep(0.05)
    if ready_file is not None:
        ready_file.write_text(consumer.worker_id)
    log.info("job worker %s running %s", consumer.worker_id, kinds)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        if server is not None:
            server.close()
        store.close()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
