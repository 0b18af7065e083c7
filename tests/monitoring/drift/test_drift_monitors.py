"""Monitor specs (bad input names the field) and evaluation: insufficient data, the topic-change
stream (alert within two windows, none over 20 unchanged windows), outliers and unseen templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from drift_stream import HashingEmbedder, stream
from modelyard.errors import InvalidRequest
from modelyard.monitoring.drift.fingerprints import canonical
from modelyard.monitoring.drift.monitors import MonitorSpec, Window, alert, evaluate, parse_spec
from modelyard.monitoring.drift.templates import TemplateMiner


def _window(texts: list[str], miner: TemplateMiner, emb: HashingEmbedder, start: int = 0, **kw) -> Window:  # type: ignore[no-untyped-def]
    n = len(texts)
    return Window(
        ids=np.arange(start, start + n),
        embeddings=emb.embed(texts),
        n_tokens=np.array(kw.get("n_tokens", emb.count_tokens(texts))),
        languages=kw.get("languages", ["en"] * n),
        odd_chars=np.zeros(n, bool),
        templates=[f"drain:{miner.add(canonical(t)).id}" for t in texts],
    )


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"id": "m", "scope": {"modle": "x"}}, "scope.modle"),
        ({"id": "m", "scope": {"model": ""}}, "scope.model"),
        ({"id": "m", "scope": {"prompt": "noversion"}}, "scope.prompt"),
        ({"id": "m", "current": {"last": "yesterday"}}, "current.last"),
        ({"id": "m", "current": {"last": "-5m"}}, "current.last"),
        ({"id": "m", "baseline": {"start": "2026-01-02"}}, "baseline.end"),
        ({"id": "m", "baseline": {"start": "2026-01-02", "end": "2026-01-01"}}, "baseline.end"),
        ({"id": "m", "baseline": {"start": "soon", "end": "2026-01-01"}}, "baseline.start"),
        ({"id": "m", "baseline": {"trailing": "7d", "end": "2026-01-01"}}, "baseline"),
        ({"id": "m", "methods": ["knn"]}, "methods"),
        ({"id": "m", "thresholds": {"domain_classifier": 2}}, "thresholds.domain_classifier"),
        ({"id": "m", "min_samples": 1.5}, "min_samples"),
        ({"id": "m", "expected_languages": ["english"]}, "expected_languages"),
        ({"id": "bad id!"}, "id"),
        ({"id": "m", "colour": "red"}, "colour"),
    ],
)
def test_bad_specs_name_the_field(spec: dict, param: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequest) as info:
        parse_spec(spec)
    assert info.value.param == param


def test_a_spec_round_trips_and_windows_are_placed() -> None:
    spec = parse_spec({"id": "m", "scope": {"model": "chat", "prompt": "support:3"},
                       "baseline": {"trailing": "1d"}, "current": {"last": "2h"}, "methods": ["centroid"]})  # fmt: skip
    assert parse_spec(spec.as_dict()) == spec
    now = datetime(2026, 12, 4, tzinfo=UTC)
    (b0, b1), (c0, c1) = spec.windows(now)
    assert c1 == now and c0 == now - timedelta(hours=2) and b1 == c0 and b0 == c0 - timedelta(days=1)
    fixed = parse_spec({"id": "f", "baseline": {"start": "2026-01-01", "end": "2026-01-02T00:00:00Z"}})
    assert fixed.windows(now)[0] == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))


def test_an_empty_or_small_window_is_insufficient_data_never_no_drift() -> None:
    spec = MonitorSpec(id="m", min_samples=10)
    miner, emb = TemplateMiner(), HashingEmbedder()
    full = _window(stream(1, 40, 99)[0], miner, emb)
    assert evaluate(spec, full, Window.empty(384))["status"] == "insufficient_data"
    assert evaluate(spec, Window.empty(), full)["status"] == "insufficient_data"
    small = _window(stream(1, 9, 99, seed=1)[0], miner, emb)
    result = evaluate(spec, full, small)
    assert result["status"] == "insufficient_data" and "needs 10" in result["reason"]


def test_the_topic_change_alerts_within_two_windows_and_twenty_unchanged_windows_never_alert() -> None:
    windows = stream(24, 150, change_at=22, seed=7)
    spec = MonitorSpec(id="stream", methods=("domain_classifier", "mmd"), alert_after=2)
    miner, emb = TemplateMiner(), HashingEmbedder()
    baseline = _window(windows[0] + windows[1], miner, emb)
    statuses: list[str] = []
    alerts: list[bool] = []
    for i, texts in enumerate(windows[2:], start=2):
        r = evaluate(spec, baseline, _window(texts, miner, emb, start=i * 1000), seed=i)
        alerts.append(alert(r["status"], statuses[::-1], spec.alert_after))
        statuses.append(r["status"])
    unchanged = 20
    assert not any(alerts[:unchanged]), statuses
    assert statuses[:unchanged].count("drift") <= 2, statuses
    assert statuses[unchanged:] == ["drift", "drift"] and alerts[unchanged + 1]


def test_outliers_and_unseen_templates_are_counted() -> None:
    miner, emb = TemplateMiner(), HashingEmbedder()
    windows = stream(2, 100, change_at=99, seed=3)
    baseline = _window(windows[0], miner, emb)
    texts = list(windows[1])
    texts[0] = " ".join([texts[0]] * 50)  # a 50x long prompt
    texts[1] = "Bonjour, je voudrais annuler ma commande de demain matin."
    languages = ["en"] * 100
    languages[1] = "fr"
    current = _window(texts, miner, emb, start=500, languages=languages)
    spec = MonitorSpec(id="m", methods=("centroid",), expected_languages=("en",))
    r = evaluate(spec, baseline, current)
    assert r["outliers"]["long"] >= 1 and r["outliers"]["language"] == 1
    assert {500, 501} <= set(r["outlier_ids"])
    assert r["outliers"]["languages"] == {"en": 99, "fr": 1}
    # the French prompt and the long one come from templates the baseline never saw
    assert r["templates"]["unseen"] >= 2 and 0 < r["templates"]["unseen_rate"] < 0.2
    no_lang = evaluate(MonitorSpec(id="m", methods=("centroid",)), baseline, current)
    assert no_lang["outliers"]["language"] == 0


def test_output_drift_longer_responses_and_more_refusals() -> None:
    miner, emb = TemplateMiner(), HashingEmbedder()
    texts = stream(2, 200, change_at=99, seed=4)
    rng = np.random.default_rng(4)
    baseline, current = _window(texts[0], miner, emb), _window(texts[1], miner, emb, start=1000)
    baseline.response_tokens = rng.normal(100, 20, 200).round()
    baseline.refusals = (rng.random(200) < 0.02).astype(float)
    current.response_tokens = rng.normal(160, 20, 200).round()
    current.refusals = (rng.random(200) < 0.2).astype(float)
    current.response_tokens[:10] = np.nan  # requests without a response are left out
    spec = MonitorSpec(id="out", methods=("domain_classifier", "response_length", "refusal_rate"))
    r = evaluate(spec, baseline, current)
    assert r["status"] == "drift" and not r["methods"]["domain_classifier"]["drift"]
    assert r["methods"]["response_length"]["drift"] and r["methods"]["refusal_rate"]["drift"]
    assert r["output"]["response_length"]["median_current"] > 140
    same = evaluate(MonitorSpec(id="out"), baseline, baseline)
    assert same["output"]["response_length"]["p_value"] > 0.5 and "response_length" not in same["methods"]


def test_alert_needs_consecutive_drift() -> None:
    assert alert("drift", ["drift"], 2) and not alert("drift", ["no_drift"], 2)
    assert not alert("drift", [], 2) and alert("drift", [], 1)
    assert not alert("insufficient_data", ["drift", "drift"], 2)
