"""Prometheus families of experiments, read at scrape time from the experiment layer of this process
(registered on the gateway's metrics registry by ``app.py``). Listed in ``docs/experiments.md``;
``tests/experiments/test_metrics.py`` checks that list against :data:`FAMILIES`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

FAMILIES = {
    "modelyard_experiment_exposures_total": "Exposures recorded by this process, by experiment and variant.",
    "modelyard_experiment_exposures_dropped_total": "Exposures dropped because the writer's queue was full.",
    "modelyard_experiment_variant_weight": "The weight (%) of each variant of each running experiment.",
    "modelyard_rollout_step": "The current step (0-based) of each progressing canary rollout, with its canary weight.",
    "modelyard_rollout_decisions_total": "Canary checks run by this process's controller, by action (wait, advance, pause, rollback, promote).",
}


class ExperimentCollector(Collector):
    def __init__(self, layer: Any) -> None:
        self._layer = layer

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        h = FAMILIES
        exposures = CounterMetricFamily(
            "modelyard_experiment_exposures",
            h["modelyard_experiment_exposures_total"],
            labels=["experiment", "variant"],
        )
        for (experiment, variant), n in sorted(self._layer.writer.counts.items()):
            exposures.add_metric([experiment, variant], float(n))
        yield exposures
        dropped = CounterMetricFamily(
            "modelyard_experiment_exposures_dropped", h["modelyard_experiment_exposures_dropped_total"]
        )
        dropped.add_metric([], float(self._layer.writer.dropped))
        yield dropped
        weight = GaugeMetricFamily(
            "modelyard_experiment_variant_weight",
            h["modelyard_experiment_variant_weight"],
            labels=["experiment", "variant"],
        )
        step = GaugeMetricFamily(
            "modelyard_rollout_step",
            h["modelyard_rollout_step"],
            labels=["experiment", "state", "canary_weight"],
        )
        for exp in self._layer.book.running():
            for v in exp.variants:
                weight.add_metric([exp.id, v.name], float(v.weight))
            if exp.rollout is not None:
                r = exp.rollout
                step.add_metric([exp.id, str(r["state"]), str(r["steps"][r["step"]])], float(r["step"]))
        yield weight
        yield step
        from modelyard.experiments.canary import DECISIONS

        decisions = CounterMetricFamily(
            "modelyard_rollout_decisions", h["modelyard_rollout_decisions_total"], labels=["action"]
        )
        for action, n in sorted(DECISIONS.items()):
            decisions.add_metric([action], float(n))
        yield decisions
