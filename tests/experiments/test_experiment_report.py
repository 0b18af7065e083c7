"""Report decisions from joined rows: no data is never success, SRM failure blocks shipping, a worse
guardrail stops, a better primary metric ships; the HTML page and its plot render from the JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from modelyard.experiments.records import Experiment, Status, Variant
from modelyard.experiments.report import build_report, is_refusal
from modelyard.experiments.report_html import render_html, timeline_png

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def experiment(
    primary: str = "feedback", guardrails: tuple[str, ...] = ("error_rate", "latency_ms")
) -> Experiment:
    return Experiment(
        id="exp-r", tenant=None, route="chat", route_kind="model", unit="user", salt="s",
        status=Status.RUNNING, traffic_percent=100,
        variants=(Variant("control", 50), Variant("treatment", 50)),
        layout=((0, 5000, "control"), (5000, 10000, "treatment")),
        primary_metric=primary, guardrails=guardrails, description="", created_by="t", created_at=T0,
    )  # fmt: skip


def rows(
    n_a: int, n_b: int, *, fb_b: float = 0.5, lat_b: float = 100.0, err_b: float = 0.02, seed: int = 0
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for variant, n, fb, lat, err in (
        ("control", n_a, 0.5, 100.0, 0.02),
        ("treatment", n_b, fb_b, lat_b, err_b),
    ):
        for i in range(n):
            out.append({
                "variant": variant, "unit": f"{variant}-{i}", "created_at": T0 + timedelta(seconds=i),
                "feedback": float(rng.random() < fb), "latency_ms": float(rng.lognormal(np.log(lat), 0.3)),
                "error_rate": float(rng.random() < err),
            })  # fmt: skip
    return out


def test_no_data_and_too_little_data_keep_running() -> None:
    doc = build_report(experiment(), [])
    assert doc["decision"]["action"] == "keep_running" and doc["decision"]["reason"].startswith("no data")
    doc = build_report(experiment(), rows(50, 50, fb_b=1.0), min_units=100)
    assert doc["decision"]["action"] == "keep_running" and "not enough data" in doc["decision"]["reason"]


def test_a_missing_primary_metric_is_not_success() -> None:
    data = [{k: v for k, v in r.items() if k != "feedback"} for r in rows(300, 300)]
    doc = build_report(experiment(), data)
    assert doc["decision"]["action"] == "keep_running"
    assert "no values" in doc["decision"]["reason"]


def test_a_better_primary_metric_ships() -> None:
    doc = build_report(experiment(), rows(1500, 1500, fb_b=0.65))
    assert doc["decision"]["action"] == "ship" and doc["decision"]["variant"] == "treatment"
    assert doc["srm"]["passed"] and doc["trustworthy"]
    seq = doc["comparisons"]["treatment"]["feedback"]["sequential"]
    assert seq["ci_low"] > 0 and 0.1 < seq["lift"] < 0.2
    assert "p_holm" in doc["comparisons"]["treatment"]["latency_ms"]["welch"]
    orjson.dumps(doc)  # plain JSON all the way down


def test_a_worse_guardrail_stops_even_when_the_primary_is_better() -> None:
    doc = build_report(experiment(), rows(1500, 1500, fb_b=0.65, lat_b=160.0))
    assert doc["decision"]["action"] == "stop" and "latency_ms" in doc["decision"]["reason"]
    assert doc["comparisons"]["treatment"]["latency_ms"]["bootstrap_p95"]["ci_low"] > 0


def test_sample_ratio_mismatch_blocks_shipping() -> None:
    doc = build_report(experiment(), rows(1100, 1400, fb_b=0.65))
    assert doc["srm"]["p_value"] < 0.001 and not doc["trustworthy"]
    assert (
        doc["decision"]["action"] == "keep_running" and "sample-ratio mismatch" in doc["decision"]["reason"]
    )


def test_no_effect_keeps_running() -> None:
    doc = build_report(experiment(), rows(800, 800, seed=3))
    assert doc["decision"]["action"] == "keep_running"
    assert "includes zero" in doc["decision"]["reason"]


def test_html_renders_from_the_document_with_a_plot() -> None:
    doc = build_report(experiment(), rows(300, 300, fb_b=0.7))
    assert len(doc["timeline"]) >= 10
    png = timeline_png(doc)
    assert png is not None and png.startswith(b"\x89PNG")
    page = render_html(doc)
    assert "data:image/png;base64," in page and doc["decision"]["action"] in page
    assert "no data to plot" in render_html(build_report(experiment(), []))


def test_refusals() -> None:
    assert is_refusal("I'm sorry, but I can't help with that.", "stop")
    assert is_refusal("", "content_filter")
    assert not is_refusal("Paris is the capital of France.", "stop")
