"""Choosing an engine worker for a queued request from the workers' heartbeat load reports.

This is the second of two steps: the gateway :class:`~modelyard.gateway.router.Router` first chose
the model's queued worker pool over its remote deployments (by the pool's load and affinity, see
``QueuedBackend.route_view``); here the pool's job goes to one worker or to the shared stream.

Policies (``queue.routing``):

- ``pull``: no choice here; the job goes to the model's shared stream and the first worker with a
  free slot takes it (least-loaded by construction, and the only policy that works with zero
  live workers, i.e. KEDA scale-from-zero).
- ``least_loaded``: the worker with the lowest load ``in_flight / capacity`` (ties: lower KV usage).
- ``affinity``: among workers under ``load_cap``, prefer one that has the request's LoRA adapter
  loaded, then one that recently served the same prompt prefix (its KV cache likely still holds the
  prefix blocks); otherwise least-loaded. The cap keeps a hot adapter or prefix from piling every
  request onto one worker: above it, affinity gives way to load.

Whatever the policy, ``None`` (use the shared stream) is returned when no live, non-draining worker
serves the model or every one is at capacity, so requests still queue and wait for scale-up.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.queue.base import WorkerReport


def load_of(report: WorkerReport) -> float:
    """The share of a worker's request slots in use (0 idle, 1 full)."""
    return report.in_flight / max(1, report.capacity)


def pick_worker(
    reports: Sequence[WorkerReport],
    model: str,
    *,
    policy: str,
    adapter: str | None = None,
    prefix: str | None = None,
    load_cap: float = 0.8,
) -> str | None:
    """The id of the worker that should serve a request for ``model``, or ``None`` for the shared queue."""
    if policy == "pull":
        return None
    live = [r for r in reports if model in r.models and not r.draining and r.in_flight < r.capacity]
    if not live:
        return None

    def key(r: WorkerReport) -> tuple[float, float, str]:
        return (load_of(r), r.kv_cache_usage, r.worker_id)

    if policy == "affinity":
        under = [r for r in live if load_of(r) < load_cap]
        for pool in (
            [r for r in under if adapter is not None and adapter in r.adapters],
            [r for r in under if prefix is not None and prefix in r.prefix_hashes],
        ):
            if pool:
                return min(pool, key=key).worker_id
    elif policy != "least_loaded":
        raise ValueError(f"unknown routing policy {policy!r}; use pull, least_loaded or affinity")
    return min(live, key=key).worker_id
