"""Building the run document's ``results`` entries, so every writer of a run shapes them alike.

:func:`combine` is the rule of ``types.py``: a result passes when every scorer passed, and its score
is the weight-averaged scorer score (an unweighted mean when every weight is 0). :func:`result_record`
writes one entry; an output with an ``error`` has no scores, score 0 and fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.evals.types import Score, Scorer, TargetOutput


def combine(scorers: Sequence[Scorer], scores: Mapping[str, Score]) -> tuple[float, bool]:
    """``(score, passed)`` of one result from its scorers' verdicts (a missing verdict fails, scores 0)."""
    if not scorers:
        return 0.0, False
    values = [(s.weight, scores[s.name].score if s.name in scores else 0.0) for s in scorers]
    total = sum(w for w, _ in values)
    score = sum(w * v for w, v in values) / total if total > 0 else sum(v for _, v in values) / len(values)
    passed = all(s.name in scores and scores[s.name].passed for s in scorers)
    return score, passed


def result_record(
    item_id: str,
    target: str,
    repeat: int,
    output: TargetOutput,
    scorers: Sequence[Scorer],
    scores: Mapping[str, Score] | None,
) -> dict[str, Any]:
    """One ``results`` entry of the run document (see ``modelyard.evals.types``)."""
    verdicts = {} if output.error or scores is None else dict(scores)
    score, passed = (0.0, False) if output.error or scores is None else combine(scorers, verdicts)
    return {
        "item_id": item_id,
        "target": target,
        "repeat": repeat,
        "output": None if output.error else output.text,
        "latency_s": output.latency_s,
        "usage": {"prompt_tokens": output.prompt_tokens, "completion_tokens": output.completion_tokens},
        "cost_usd": output.cost_usd,
        "error": output.error,
        "scores": {
            name: {"score": v.score, "passed": v.passed, "reason": v.reason} for name, v in verdicts.items()
        },
        "score": score,
        "passed": passed,
    }


async def score_output(scorers: Sequence[Scorer], item: Any, output: TargetOutput) -> dict[str, Score]:
    """Every scorer's verdict on one output, in suite order (scorers run one after another: a judge
    scorer's own concurrency is the runner's business)."""
    return {s.name: await s.score(item, output) for s in scorers}
