"""Alert webhooks: firing once, re-sent only after the cooldown, resolved on no drift, untouched by
insufficient data, retried after a failed POST; Alertmanager's v2 shape without prompt text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from modelyard.monitoring.drift.alerts import Notifier
from modelyard.monitoring.drift.store import DriftStore
from modelyard.settings import DriftWebhookSettings

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        self.fail = False

    def __call__(self, url: str, *, json: Any, timeout: float) -> httpx.Response:
        if self.fail:
            raise httpx.ConnectError("down")
        self.bodies.append((url, json))
        return httpx.Response(200, request=httpx.Request("POST", url))


def _run(status: str, alert: bool) -> dict[str, Any]:
    return {"id": 1, "started_at": T0.isoformat(), "status": status, "alert": alert,
            "result": {"reason": "drift by mmd", "methods": {"mmd": {"score": 0.03}}}}  # fmt: skip


@pytest.fixture
def hooks() -> list[DriftWebhookSettings]:
    return [
        DriftWebhookSettings(url="http://am:9093/api/v2/alerts", format="alertmanager"),
        DriftWebhookSettings(url="http://hooks/drift"),
    ]


def test_firing_dedup_cooldown_resolved(db: Engine, hooks: list[DriftWebhookSettings]) -> None:
    rx = Receiver()
    n = Notifier(DriftStore(db), hooks, cooldown_s=3600, post=rx)
    assert n.after_run("m", _run("drift", False), T0) is None  # drifting but not alerting yet
    assert n.after_run("m", _run("drift", True), T0) == "firing"
    assert len(rx.bodies) == 2
    (am_url, am), (_, generic) = rx.bodies
    assert am[0]["labels"] == {"alertname": "PromptDrift", "monitor": "m", "severity": "warning"}
    assert am[0]["startsAt"] == T0.isoformat() and "endsAt" not in am[0]
    assert generic["status"] == "firing" and generic["run"]["scores"] == {"mmd": 0.03}
    assert n.after_run("m", _run("drift", True), T0 + timedelta(minutes=30)) is None  # de-duplicated
    assert n.after_run("m", _run("insufficient_data", False), T0 + timedelta(minutes=40)) is None
    assert n.after_run("m", _run("drift", True), T0 + timedelta(hours=2)) == "firing"  # cooldown over
    assert rx.bodies[-2][1][0]["startsAt"] == T0.isoformat()  # the same alert, still since T0
    assert n.after_run("m", _run("no_drift", False), T0 + timedelta(hours=3)) == "resolved"
    assert rx.bodies[-2][1][0]["endsAt"] == (T0 + timedelta(hours=3)).isoformat()
    assert n.after_run("m", _run("no_drift", False), T0 + timedelta(hours=4)) is None
    assert len(rx.bodies) == 6


def test_a_failed_post_is_retried_next_run(db: Engine, hooks: list[DriftWebhookSettings]) -> None:
    rx = Receiver()
    rx.fail = True
    n = Notifier(DriftStore(db), hooks[1:], cooldown_s=3600, post=rx)
    assert n.after_run("m", _run("drift", True), T0) is None
    rx.fail = False
    assert n.after_run("m", _run("drift", True), T0 + timedelta(minutes=1)) == "firing"
    assert Notifier(DriftStore(db), [], 0, post=rx).after_run("m", _run("drift", True), T0) is None
