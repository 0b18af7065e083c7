"""What the prompt layer tells observability: the span's attributes and name, the bounded metric
label (past its cap new prompt versions count as ``other``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelyard.gateway.pipeline import Gateway, StaticResolver
from modelyard.gateway.router import Router
from modelyard.monitoring.labels import OTHER, BoundedValues
from modelyard.monitoring.metrics import Metrics, Outcome
from modelyard.monitoring.monitor import Monitor
from modelyard.monitoring.top import parse
from modelyard.settings import Settings


def monitor(tmp_path: Path) -> Monitor:
    settings = Settings(
        local_models=[],
        embedders=[],
        data_dir=tmp_path,
        monitoring={
            "tracing": {"exporter": "file", "file_path": str(tmp_path / "s.jsonl")},
            "request_log": {"enabled": False},
        },
    )
    router = Router(settings.router.policy, settings.circuit_breaker, ewma_alpha=0.2, fallbacks={})
    m = Monitor(settings, Gateway(router, StaticResolver(router), settings.limits))
    m.start()
    return m


def spans(m: Monitor, tmp_path: Path) -> list[dict[str, Any]]:
    assert m.provider is not None
    m.provider.force_flush()
    return [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]


def value(m: Monitor, name: str, **labels: str) -> float:
    return parse(m.metrics.exposition().decode()).get((name, tuple(sorted(labels.items()))), 0.0)


def test_bounded_values_cap_distinct_values() -> None:
    bounded = BoundedValues(cap=2)
    assert [bounded(v) for v in ("a:1", "b:1", "a:1", "c:1", "b:1", "d:9")] == [
        "a:1",
        "b:1",
        "a:1",
        OTHER,
        "b:1",
        OTHER,
    ]


def test_prompt_metric_label_overflows_to_other() -> None:
    m = Metrics()
    for i in range(205):
        m.record(
            Outcome(
                model="smol", tenant="t", endpoint="chat/completions", status=200, prompt_version=f"p:{i}"
            )
        )
    text = m.exposition().decode()
    assert text.count("modelyard_prompt_requests_total{") == 201  # 200 versions and `other`
    assert 'modelyard_prompt_requests_total{model="smol",prompt_version="other",status="200"} 5.0' in text
    m.record(Outcome(model="smol", tenant="t", endpoint="chat/completions", status=200))
    assert m.exposition().decode().count("modelyard_prompt_requests_total{") == 201  # no prompt: not counted


async def test_prompted_sets_span_attributes_and_the_metric(tmp_path: Path) -> None:
    m = monitor(tmp_path)
    obs = m.observe(
        endpoint="chat/completions",
        model_ref="",
        request_id="r1",
        stream=False,
        body={"prompt": {"id": "qa"}},
        state={},
        headers={},
    )
    obs.prompted("qa:3", "rendered-model", {"model": "rendered-model", "messages": []})
    obs.completed(b'{"id": "x", "choices": []}')
    [root] = [s for s in spans(m, tmp_path) if s["name"] == "chat rendered-model"]
    assert root["attributes"]["modelyard.prompt.version"] == "qa:3"
    assert root["attributes"]["gen_ai.request.model"] == "rendered-model"
    assert (
        value(m, "modelyard_prompt_requests_total", model="unknown", prompt_version="qa:3", status="200") == 1
    )
    await m.stop()
