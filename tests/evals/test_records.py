"""Result entries: the weighted score, the all-scorers-pass rule, errors, and a round trip through the summary."""

from __future__ import annotations

import pytest

from modelyard.evals.records import combine, result_record, score_output
from modelyard.evals.scorers import default_registry
from modelyard.evals.summary import summarize
from modelyard.evals.types import EvalItem, Score, TargetOutput


async def test_weighted_score_and_all_must_pass() -> None:
    scorers = default_registry().build_all(
        [{"type": "equals", "weight": 3}, {"type": "contains", "values": ["zzz"], "weight": 1}]
    )
    item = EvalItem("q", [], "Paris")
    output = TargetOutput("Paris", 0.2, prompt_tokens=7, completion_tokens=2)
    scores = await score_output(scorers, item, output)
    record = result_record("q", "m", 0, output, scorers, scores)
    assert record["score"] == pytest.approx(0.75) and record["passed"] is False
    assert record["scores"]["equals"] == {"score": 1.0, "passed": True, "reason": None}
    assert record["usage"] == {"prompt_tokens": 7, "completion_tokens": 2}
    assert summarize([record], ["m"])["m"]["per_scorer"]["contains"]["pass_rate"] == 0.0


def test_zero_weights_average_plainly_and_missing_verdicts_fail() -> None:
    scorers = default_registry().build_all(
        [{"type": "equals", "weight": 0}, {"type": "json_valid", "weight": 0}]
    )
    assert combine(scorers, {"equals": Score(1.0, True), "json_valid": Score(0.0, True)}) == (0.5, True)
    assert combine(scorers, {"equals": Score(1.0, True)}) == (0.5, False)


def test_an_errored_output_has_no_scores_and_fails() -> None:
    scorers = default_registry().build_all([{"type": "equals"}])
    record = result_record("q", "m", 1, TargetOutput("", 1.0, error="timeout"), scorers, None)
    assert (record["output"], record["scores"], record["score"], record["passed"]) == (None, {}, 0.0, False)
    assert summarize([record], ["m"])["m"]["errors"] == 1
