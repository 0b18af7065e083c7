"""Running monitors: load both windows, evaluate, decide the alert, store the run, flag outliers.

:func:`run_monitor` is what ``POST /admin/drift/monitors/{id}/run``, ``modelyard drift run`` and the
periodic task ``drift.monitors`` call; :func:`run_due` runs every monitor whose ``interval_s`` has
passed since its last run.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from modelyard.monitoring.drift.monitors import alert, evaluate
from modelyard.monitoring.drift.store import DriftStore, Monitor

log = logging.getLogger("modelyard.monitoring.drift")


def run_monitor(
    store: DriftStore, monitor: Monitor, now: datetime | None = None, notifier: Any = None
) -> dict[str, Any]:
    """One run of ``monitor`` at ``now``; the stored run (``id``, ``status``, ``alert``, ``result``).
    ``notifier`` (an :class:`~.alerts.Notifier`) sends the alert, if any, to the webhooks."""
    now = now or datetime.now(UTC)
    spec = monitor.spec
    (b0, b1), (c0, c1) = spec.windows(now)
    started = time.perf_counter()
    baseline = store.window(spec.scope, b0, b1)
    current = store.window(spec.scope, c0, c1)
    result = evaluate(spec, baseline, current)
    result["windows"] = {
        "baseline": [b0.isoformat(), b1.isoformat()],
        "current": [c0.isoformat(), c1.isoformat()],
    }
    result["duration_s"] = round(time.perf_counter() - started, 4)
    previous = [r["status"] for r in store.runs(spec.id, limit=max(spec.alert_after - 1, 1))]
    fired = alert(result["status"], previous, spec.alert_after)
    flagged = result.pop("outlier_ids", [])
    store.flag_outliers(flagged)
    result["alert"] = fired
    run_id = store.add_run(spec.id, now, result, fired)
    if fired:
        log.warning("drift monitor %s alerts: %s", spec.id, result.get("reason"))
    run = {"id": run_id, "monitor": spec.id, "started_at": now.isoformat(), "status": result["status"],
           "alert": fired, "result": result}  # fmt: skip
    if notifier is not None:
        run["notified"] = notifier.after_run(spec.id, run, now)
    return run


def run_due(store: DriftStore, now: datetime | None = None, notifier: Any = None) -> dict[str, str]:
    """Run each monitor due at ``now``; {monitor id: status}. One failing monitor does not stop the rest."""
    now = now or datetime.now(UTC)
    out: dict[str, str] = {}
    for m in store.list_monitors():
        last = m.last_run_at
        if last is not None and (last if last.tzinfo else last.replace(tzinfo=UTC)) > now - timedelta(
            seconds=m.spec.interval_s
        ):
            continue
        try:
            out[m.spec.id] = run_monitor(store, m, now, notifier)["status"]
        except Exception:
            log.exception("drift monitor %s failed", m.spec.id)
            out[m.spec.id] = "error"
    return out
