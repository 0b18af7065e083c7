"""Run documents built by hand for the report, gate and compare tests, and a custom scorer to load by path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from modelyard.evals.summary import summarize
from modelyard.evals.types import RUN_DOCUMENT_VERSION, EvalItem, Score, TargetOutput


def result(
    item_id: str,
    target: str,
    passed: bool,
    *,
    score: float | None = None,
    repeat: int = 0,
    latency_s: float = 0.1,
    error: str | None = None,
    scorer: str = "exact",
    output: str = "answer",
    reason: str | None = None,
) -> dict[str, Any]:
    value = (1.0 if passed else 0.0) if score is None else score
    return {
        "item_id": item_id,
        "target": target,
        "repeat": repeat,
        "output": None if error else output,
        "latency_s": latency_s,
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        "cost_usd": None,
        "error": error,
        "scores": {}
        if error
        else {
            scorer: {
                "score": value,
                "passed": passed,
                "reason": reason if reason or passed else "wrong answer",
            }
        },
        "score": 0.0 if error else value,
        "passed": False if error else passed,
    }


def run_doc(
    results: Sequence[dict[str, Any]],
    targets: Iterable[str] = ("model-a",),
    *,
    run_id: str = "run-1",
    scorers: Sequence[str] = ("exact",),
    gate: dict[str, Any] | None = None,
    status: str = "passed",
) -> dict[str, Any]:
    target_objs = [
        {"name": t, "kind": "model", "ref": t, "resolved": t, "digest": "sha256:" + t} for t in targets
    ]
    return {
        "version": RUN_DOCUMENT_VERSION,
        "run_id": run_id,
        "created_at": "2026-12-04T03:00:00Z",
        "git_commit": "abc123",
        "suite": {"name": "factual", "digest": "sha256:suite"},
        "dataset": {"name": "facts", "version": 1, "digest": "sha256:data"},
        "targets": target_objs,
        "scorers": [{"name": s, "type": "equals", "threshold": 1.0, "weight": 1.0} for s in scorers],
        "repeats": 1,
        "seed": 0,
        "results": list(results),
        "summary": summarize(results, target_objs, list(scorers)),
        "gate": gate,
        "status": status,
    }


def passing_doc(flags: Sequence[bool], target: str = "model-a", run_id: str = "run-1") -> dict[str, Any]:
    """One result per item ``q0..qN`` with the given pass flags."""
    return run_doc([result(f"q{i}", target, f) for i, f in enumerate(flags)], [target], run_id=run_id)


def word_count_scorer(item: EvalItem, output: TargetOutput, max_words: int = 3) -> float:
    """A custom scorer by dotted path (``eval_docs:word_count_scorer``): 1 for short answers."""
    return 1.0 if len(output.text.split()) <= max_words else 0.0


class StartsWith:
    """A custom scorer class (``eval_docs:StartsWith``) with an async ``score``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        ok = output.text.startswith(self.prefix)
        return Score(float(ok), ok, None if ok else f"does not start with {self.prefix!r}")


def garbage_scorer(item: EvalItem, output: TargetOutput) -> str:
    """A broken custom scorer: returns neither a Score, a number nor a bool."""
    return "yes"
