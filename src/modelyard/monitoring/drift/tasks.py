"""The periodic tasks of drift monitoring (listed in :func:`modelyard.jobs.catalog.known_tasks`):

- ``drift.consume`` every ``monitoring.drift.interval_s``: :class:`.consumer.DriftConsumer` once, then
  the retention prune (samples and runs older than ``retention_days``);
- ``drift.monitors`` every ``monitoring.drift.monitor_every_s``: :func:`.runner.run_due`.

Both only when ``monitoring.drift.enabled``; they run on the jobs lease holder, in a worker thread,
and open their store on first run (so ``serve`` start-up pays nothing, not even the embedder load).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("modelyard.monitoring.drift")


def drift_tasks(settings: Any) -> list[Any]:
    from modelyard.jobs.periodic import PeriodicTask

    drift = settings.monitoring.drift
    if not drift.enabled:
        return []
    opened: dict[str, Any] = {}

    def store() -> Any:
        if "store" not in opened:
            from modelyard.monitoring.drift.store import DriftStore
            from modelyard.store.db import create_db_engine, migrate

            engine = create_db_engine(settings.resolved_database_url)
            migrate(engine)
            opened["store"] = DriftStore(engine)
        return opened["store"]

    def consume() -> Any:
        from modelyard.monitoring.drift.consumer import DriftConsumer

        if "consumer" not in opened:
            opened["consumer"] = DriftConsumer(store(), drift)
        stats = opened["consumer"].run_once()
        store().prune(datetime.now(UTC) - timedelta(days=drift.retention_days))
        return stats

    def monitors() -> dict[str, str]:
        from modelyard.monitoring.drift.alerts import Notifier
        from modelyard.monitoring.drift.runner import run_due

        return run_due(store(), notifier=Notifier(store(), drift.webhooks, drift.alert_cooldown_s))

    async def run_consume(_token: int) -> None:
        import anyio

        stats = await anyio.to_thread.run_sync(consume)
        if stats.stored:
            log.info("drift consumer stored %d of %d rows", stats.stored, stats.read)

    async def run_monitors(_token: int) -> None:
        import anyio

        for mid, status in (await anyio.to_thread.run_sync(monitors)).items():
            log.info("drift monitor %s: %s", mid, status)

    return [
        PeriodicTask("drift.consume", drift.interval_s, run_consume,
                     "embed sampled prompts of the request log (monitoring.drift)"),
        PeriodicTask("drift.monitors", drift.monitor_every_s, run_monitors, "run the drift monitors that are due"),
    ]  # fmt: skip
