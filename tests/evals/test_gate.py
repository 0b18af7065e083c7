"""The gate: minimum pass rates, regression against a baseline with the paired statistics, exit codes."""

from __future__ import annotations

from typing import Any

import pytest
from eval_docs import passing_doc, result, run_doc

from modelyard.evals.gate import GateSpecError, evaluate_gate, exit_code, parse_gate, run_status


def test_min_pass_rate_global_and_per_target() -> None:
    doc = run_doc(
        [result("q0", "a", True), result("q1", "a", False), result("q0", "b", True), result("q1", "b", True)],
        ["a", "b"],
    )
    assert evaluate_gate(doc, {"min_pass_rate": 0.5})["passed"]
    gate = evaluate_gate(doc, {"min_pass_rate": 0.8})
    assert not gate["passed"] and gate["reasons"] == ["a: pass rate 0.500 < min_pass_rate 0.800"]
    per = evaluate_gate(doc, {"min_pass_rate": {"default": 0.9, "a": 0.4}})
    assert per["passed"] and per["min_pass_rate"] == {"default": 0.9, "a": 0.4}
    unknown = evaluate_gate(doc, {"min_pass_rate": {"zzz": 0.4}})
    assert not unknown["passed"] and "zzz" in unknown["reasons"][0]


def test_regression_against_a_baseline_quotes_the_statistics() -> None:
    baseline = passing_doc([True] * 30, run_id="base")
    worse = passing_doc([False] * 8 + [True] * 22, run_id="cand")
    gate = evaluate_gate(worse, {"max_regression": 0.05}, baseline)
    assert not gate["passed"] and gate["baseline_run"] == "base"
    (reason,) = gate["reasons"]
    assert "pass_rate fell 0.267" in reason and "McNemar p=0.0078" in reason and "regression" in reason
    (stats,) = gate["comparisons"]
    assert (stats["pass_to_fail"], stats["fail_to_pass"], stats["verdict"]) == (8, 0, "regression")
    assert evaluate_gate(worse, {"max_regression": 0.3}, baseline)["passed"]


def test_significant_only_ignores_a_drop_that_is_noise() -> None:
    baseline = passing_doc([True] * 30)
    slightly = passing_doc([False] * 2 + [True] * 28)
    assert not evaluate_gate(slightly, {"max_regression": 0.05}, baseline)["passed"]
    assert evaluate_gate(slightly, {"max_regression": 0.05, "significant_only": True}, baseline)["passed"]


def test_mean_score_regression_and_missing_baseline() -> None:
    base = run_doc([result(f"q{i}", "model-a", True, score=0.9) for i in range(10)])
    cand = run_doc([result(f"q{i}", "model-a", True, score=0.7) for i in range(10)])
    gate = evaluate_gate(cand, {"max_regression": {"mean_score": 0.1}}, base)
    assert not gate["passed"] and "mean_score fell 0.200" in gate["reasons"][0]
    assert evaluate_gate(cand, {"max_regression": {"pass_rate": 0.0}}, base)["passed"]
    assert not evaluate_gate(cand, {"max_regression": 0.1})["passed"]  # no baseline to compare with


def test_a_target_missing_from_the_baseline_is_noted() -> None:
    base = run_doc([result("q0", "a", True), result("q0", "b", True)], ["a", "b"])
    cand = run_doc([result("q0", "a", True), result("q0", "c", False)], ["a", "c"])
    gate = evaluate_gate(cand, {"max_regression": 0.1}, base)
    assert gate["passed"] and gate["notes"] == ["c: not in the baseline run, not compared"]


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"min_pass_rate": 1.5}, "gate.min_pass_rate"),
        ({"min_pass_rate": "high"}, "gate.min_pass_rate"),
        ({"min_pass_rate": {"a": -0.1}}, "gate.min_pass_rate.a"),
        ({"max_regression": {"latency": 0.1}}, "gate.max_regression.latency"),
        ({"significant_only": "yes"}, "gate.significant_only"),
        ({"max_pass_rate": 0.1}, "gate.max_pass_rate"),
        ([1], "gate"),
    ],
)
def test_bad_gate_names_the_field(spec: Any, param: str) -> None:
    with pytest.raises(GateSpecError) as caught:
        parse_gate(spec)
    assert caught.value.param == param


def test_status_and_exit_codes() -> None:
    doc = passing_doc([True, False])
    passed = evaluate_gate(doc, {"min_pass_rate": 0.5})
    failed = evaluate_gate(doc, {"min_pass_rate": 0.9})
    assert run_status(passed, run_failed=False) == "passed"
    assert run_status(failed, run_failed=False) == "failed"
    assert run_status(None, run_failed=False) == "passed"
    assert run_status(passed, run_failed=True) == "error"
    assert exit_code({**doc, "gate": passed, "status": "passed"}) == 0
    assert exit_code({**doc, "gate": None, "status": "passed"}) == 0
    assert exit_code({**doc, "gate": failed, "status": "failed"}) == 1
    assert exit_code({**doc, "gate": None, "status": "error"}) == 2
