"""docs/observability.md lists exactly the metric families /metrics exports (docs cannot drift)."""

from __future__ import annotations

import re

from modelyard.monitoring.metrics import EngineCollector, Metrics
from servers import ROOT


def test_metric_table_matches_the_code() -> None:
    m = Metrics()
    m.registry.register(EngineCollector(lambda: []))
    exported = {fam.name + ("_total" if fam.type == "counter" else "") for fam in m.registry.collect()}
    doc = (ROOT / "docs" / "observability.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_:]+)` \|", doc, re.MULTILINE))
    assert documented == exported, (sorted(exported - documented), sorted(documented - exported))
