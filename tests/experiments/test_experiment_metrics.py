"""docs/experiments.md lists exactly the experiment metric families, and the collector reports the
layer's exposure counts and the running experiments' weights."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest

from modelyard.experiments.layer import ExperimentBook, ExperimentLayer, ExposureWriter
from modelyard.experiments.metrics import FAMILIES, ExperimentCollector
from modelyard.experiments.records import Status
from modelyard.experiments.store import ExperimentStore, Exposure
from modelyard.registry import Registry
from servers import ROOT


def test_the_doc_lists_the_families() -> None:
    doc = (ROOT / "docs" / "experiments.md").read_text()
    section = doc.split("## Prometheus", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([a-z0-9_:]+)` \|", section, re.MULTILINE)) == set(FAMILIES)


def test_the_collector_reports_exposures_and_weights(registry: Registry, store: ExperimentStore) -> None:
    spec = {
        "id": "m",
        "route": "chat",
        "variants": [{"name": "a", "weight": 30}, {"name": "b", "weight": 70}],
    }
    store.create(spec, tenant=None)
    store.transition("m", Status.RUNNING)
    book = ExperimentBook(registry, store)
    book.refresh()
    writer = ExposureWriter(store, max_queue=2)
    layer = ExperimentLayer(None, book, writer)
    for _ in range(3):
        writer.add(Exposure("m", "b", "u", "r", None, None, datetime.now(UTC)))
    prom = CollectorRegistry()
    prom.register(ExperimentCollector(layer))
    text = generate_latest(prom).decode()
    names = {fam.name + ("_total" if fam.type == "counter" else "") for fam in prom.collect()}
    assert names == set(FAMILIES)
    assert 'modelyard_experiment_exposures_total{experiment="m",variant="b"} 2.0' in text
    assert "modelyard_experiment_exposures_dropped_total 1.0" in text
    assert 'modelyard_experiment_variant_weight{experiment="m",variant="b"} 70.0' in text
