"""Prometheus families of drift monitors, from each monitor's latest run in the metadata store
(registered on the gateway's metrics registry by ``app.py``; read at scrape time, at most once per
:data:`CACHE_S`). Labels are the monitor id and the method, never prompt text. Listed in
``docs/drift.md``; ``tests/monitoring/drift/test_drift_metrics.py`` checks that list against
:data:`FAMILIES`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger("modelyard.monitoring.drift")
CACHE_S = 15.0
FAMILIES = {
    "modelyard_drift_score": "The latest run's score of each drift method (AUC, MMD², centroid distance).",
    "modelyard_drift_threshold": "The threshold each method's score was compared with in the latest run.",
    "modelyard_drift_p_value": "The latest run's MMD permutation p-value.",
    "modelyard_drift_status": "1 for the latest run's status (drift, no_drift, insufficient_data), by monitor.",
    "modelyard_drift_alert": "1 when the monitor's latest run alerted (drift in `alert_after` runs in a row).",
    "modelyard_drift_outlier_rate": "Share of the current window's prompts flagged as outliers.",
    "modelyard_drift_unseen_template_rate": "Share of the current window's prompts from templates the baseline lacks.",
}


class DriftCollector(Collector):
    def __init__(self, store: Any, clock: Any = time.monotonic) -> None:
        self._store, self._clock = store, clock
        self._cached: tuple[float, dict[str, dict[str, Any]]] | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def _latest(self) -> dict[str, dict[str, Any]]:
        now = self._clock()
        if self._cached is None or now - self._cached[0] > CACHE_S:
            try:
                self._cached = (now, self._store.latest_runs())
            except Exception as exc:  # a scrape never fails because the store is briefly away
                log.warning("drift gauges: %s", exc)
                return self._cached[1] if self._cached else {}
        return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        h = FAMILIES
        score = GaugeMetricFamily(
            "modelyard_drift_score", h["modelyard_drift_score"], labels=["monitor", "method"]
        )
        threshold = GaugeMetricFamily(
            "modelyard_drift_threshold", h["modelyard_drift_threshold"], labels=["monitor", "method"]
        )
        p_value = GaugeMetricFamily(
            "modelyard_drift_p_value", h["modelyard_drift_p_value"], labels=["monitor"]
        )
        status = GaugeMetricFamily(
            "modelyard_drift_status", h["modelyard_drift_status"], labels=["monitor", "status"]
        )
        alert = GaugeMetricFamily("modelyard_drift_alert", h["modelyard_drift_alert"], labels=["monitor"])
        outliers = GaugeMetricFamily(
            "modelyard_drift_outlier_rate", h["modelyard_drift_outlier_rate"], labels=["monitor"]
        )
        unseen = GaugeMetricFamily(
            "modelyard_drift_unseen_template_rate",
            h["modelyard_drift_unseen_template_rate"],
            labels=["monitor"],
        )
        for mid, run in sorted(self._latest().items()):
            result = run["result"] or {}
            for method, r in sorted((result.get("methods") or {}).items()):
                score.add_metric([mid, method], float(r["score"]))
                if r.get("threshold") is not None:
                    threshold.add_metric([mid, method], float(r["threshold"]))
                if method == "mmd":
                    p_value.add_metric([mid], float(r["p_value"]))
            for s in ("drift", "no_drift", "insufficient_data"):
                status.add_metric([mid, s], 1.0 if run["status"] == s else 0.0)
            alert.add_metric([mid], 1.0 if run["alert"] else 0.0)
            if (result.get("outliers") or {}).get("rate") is not None:
                outliers.add_metric([mid], float(result["outliers"]["rate"]))
            if (result.get("templates") or {}).get("unseen_rate") is not None:
                unseen.add_metric([mid], float(result["templates"]["unseen_rate"]))
        yield from (score, threshold, p_value, status, alert, outliers, unseen)
