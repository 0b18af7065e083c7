"""The run summary: items are the unit, repeats are averaged, errors count as failures."""

from __future__ import annotations

import pytest
from eval_docs import result

from modelyard.evals.summary import item_outcomes, summarize


def test_repeats_reduce_per_item_with_the_half_rule() -> None:
    results = [
        # q0: 2 of 3 repeats pass -> passes; q1: 1 of 3 -> fails; q2: 1 of 2 (a tie) -> passes
        result("q0", "m", True, repeat=0),
        result("q0", "m", True, repeat=1),
        result("q0", "m", False, repeat=2),
        result("q1", "m", True, repeat=0),
        result("q1", "m", False, repeat=1),
        result("q1", "m", False, repeat=2),
        result("q2", "m", True, repeat=0),
        result("q2", "m", False, repeat=1),
    ]
    outcomes = item_outcomes(results, "m")
    assert [o.passed for o in outcomes.values()] == [True, False, True]
    s = summarize(results, [{"name": "m"}])["m"]
    assert (s["items"], s["results"], s["errors"]) == (3, 8, 0)
    assert s["pass_rate"] == pytest.approx(2 / 3)
    assert s["mean_score"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert s["result_pass_rate"] == pytest.approx(4 / 8)
    assert s["per_scorer"]["exact"] == {
        "mean": pytest.approx(s["mean_score"]),
        "pass_rate": pytest.approx(2 / 3),
    }


def test_errors_fail_and_are_left_out_of_latency() -> None:
    results = [
        result("q0", "m", True, latency_s=1.0),
        result("q1", "m", True, latency_s=3.0),
        result("q2", "m", True, latency_s=99.0, error="upstream 503"),
    ]
    s = summarize(results, ["m"])["m"]
    assert (s["errors"], s["pass_rate"]) == (1, pytest.approx(2 / 3))
    assert s["latency_p50_s"] == pytest.approx(2.0)
    assert s["latency_p95_s"] == pytest.approx(1.0 + 0.95 * 2.0)
    assert (s["prompt_tokens"], s["completion_tokens"], s["cost_usd"]) == (30, 15, None)


def test_targets_are_separate_and_an_empty_target_has_no_rates() -> None:
    results = [result("q0", "a", True), result("q0", "b", False)]
    results[0]["cost_usd"] = 0.002
    summary = summarize(results, ["a", "b", "c"], scorers=["exact", "never_ran"])
    assert list(summary) == ["a", "b", "c"]
    assert (summary["a"]["pass_rate"], summary["b"]["pass_rate"]) == (1.0, 0.0)
    assert summary["a"]["cost_usd"] == pytest.approx(0.002)
    assert summary["a"]["per_scorer"]["never_ran"] == {"mean": 0.0, "pass_rate": 0.0}
    assert summary["c"]["pass_rate"] is None and summary["c"]["latency_p50_s"] is None
