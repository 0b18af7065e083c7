"""The drift gauges: what a latest run exports, the cache, and docs/drift.md listing exactly the families."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from modelyard.monitoring.drift.metrics import FAMILIES, DriftCollector
from servers import ROOT


class FakeStore:
    def __init__(self) -> None:
        self.calls = 0
        self.runs: dict[str, dict[str, Any]] = {
            "m1": {"status": "drift", "alert": True, "result": {
                "methods": {"domain_classifier": {"score": 0.8, "threshold": 0.55},
                            "mmd": {"score": 0.02, "p_value": 0.004, "threshold": 0.01}},
                "outliers": {"rate": 0.05}, "templates": {"unseen_rate": 0.4}}},
            "m2": {"status": "insufficient_data", "alert": False, "result": {"methods": {}}},
        }  # fmt: skip

    def latest_runs(self) -> dict[str, dict[str, Any]]:
        self.calls += 1
        return self.runs


def test_latest_runs_become_gauges_and_scrapes_are_cached() -> None:
    store, t = FakeStore(), [0.0]
    reg = CollectorRegistry()
    reg.register(DriftCollector(store, clock=lambda: t[0]))
    text = generate_latest(reg).decode()
    assert 'modelyard_drift_score{method="domain_classifier",monitor="m1"} 0.8' in text
    assert 'modelyard_drift_p_value{monitor="m1"} 0.004' in text
    assert 'modelyard_drift_alert{monitor="m1"} 1.0' in text
    assert 'modelyard_drift_status{monitor="m2",status="insufficient_data"} 1.0' in text
    assert 'modelyard_drift_unseen_template_rate{monitor="m1"} 0.4' in text
    assert 'modelyard_drift_outlier_rate{monitor="m2"}' not in text
    generate_latest(reg)
    assert store.calls == 1
    t[0] = 100.0
    generate_latest(reg)
    assert store.calls == 2


def test_docs_list_exactly_the_families() -> None:
    doc = (ROOT / "docs" / "drift.md").read_text()
    documented = set(re.findall(r"^\| `(modelyard_drift_[a-z_]+)` \|", doc, re.MULTILINE))
    assert documented == set(FAMILIES)
