"""Drift alerts to webhooks, with de-duplication and a cooldown.

After each run :meth:`Notifier.after_run` compares the run with what was last sent for the monitor
(kept in ``drift_state`` as ``alert:<id>``):

- a run that alerts, when the monitor was not firing, sends ``firing``; while it keeps alerting it is
  re-sent at most every ``alert_cooldown_s`` (Alertmanager itself also de-duplicates by labels);
- a ``no_drift`` run after ``firing`` sends ``resolved``; ``insufficient_data`` changes nothing (no
  evidence either way);
- a failed POST is logged and retried on the next run (the state only moves after a success).

Formats: ``alertmanager`` POSTs Alertmanager's v2 list ``[{labels, annotations, startsAt, endsAt?}]``
with ``alertname=PromptDrift`` and the monitor id as labels (never prompt text); ``json`` POSTs one
object ``{"monitor", "status", "run"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from modelyard.monitoring.drift.store import DriftStore

log = logging.getLogger("modelyard.monitoring.drift")
Post = Callable[..., Any]


class Notifier:
    def __init__(
        self, store: DriftStore, webhooks: list[Any], cooldown_s: float, post: Post | None = None
    ) -> None:
        self.store, self.webhooks, self.cooldown_s = store, webhooks, cooldown_s
        self._post = post

    def after_run(self, monitor_id: str, run: dict[str, Any], now: datetime | None = None) -> str | None:
        """What was sent for ``run`` (``firing``, ``resolved``) or ``None``."""
        if not self.webhooks:
            return None
        now = now or datetime.now(UTC)
        key = f"alert:{monitor_id}"[:64]
        state = self.store.get_state(key) or {}
        firing = state.get("status") == "firing"
        if run["alert"]:
            sent_at = datetime.fromisoformat(state["sent_at"]) if firing else None
            if sent_at is not None and now - sent_at < timedelta(seconds=self.cooldown_s):
                return None
            started = state.get("started_at") if firing else now.isoformat()
            new = {"status": "firing", "sent_at": now.isoformat(), "started_at": started}
        elif firing and run["status"] == "no_drift":
            new = {"status": "resolved", "sent_at": now.isoformat(), "started_at": state.get("started_at")}
        else:
            return None
        if all(self._send(hook, monitor_id, new, run, now) for hook in self.webhooks):
            self.store.commit_samples([], {key: new})
            return str(new["status"])
        return None

    def _send(
        self, hook: Any, monitor_id: str, state: dict[str, Any], run: dict[str, Any], now: datetime
    ) -> bool:
        result = run.get("result") or {}
        if hook.format == "alertmanager":
            alert: dict[str, Any] = {
                "labels": {"alertname": "PromptDrift", "monitor": monitor_id, "severity": "warning"},
                "annotations": {
                    "summary": f"prompt drift on monitor {monitor_id}",
                    "description": str(result.get("reason", "")),
                },
                "startsAt": state["started_at"],
            }
            if state["status"] == "resolved":
                alert["endsAt"] = now.isoformat()
            body: Any = [alert]
        else:
            body = {"monitor": monitor_id, "status": state["status"], "run": {
                "id": run.get("id"), "started_at": run.get("started_at"), "status": run.get("status"),
                "reason": result.get("reason"),
                "scores": {m: v.get("score") for m, v in (result.get("methods") or {}).items()},
            }}  # fmt: skip
        try:
            post = self._post
            if post is None:
                import httpx

                post = httpx.post
            r = post(hook.url, json=body, timeout=hook.timeout_s)
            r.raise_for_status()
            return True
        except Exception as exc:
            log.warning("drift alert for %s to %s failed: %s", monitor_id, hook.url, exc)
            return False
