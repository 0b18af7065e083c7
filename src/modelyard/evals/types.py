"""The plain data an evaluation passes between its parts, and the run document every report reads.

A dataset item is what a scorer judges against; a :class:`TargetOutput` is what one target answered
for one item and one repeat; a :class:`Score` is one scorer's verdict on it. Scores are in [0, 1];
``passed`` is ``score >= threshold`` unless a scorer decides otherwise (say, a latency bound).

The run document (``RUN_DOCUMENT_VERSION``) is the one result format: stored with the run, written
as JSON, and the input of the terminal table, JUnit XML, the HTML report, ``compare`` and the gate::

    {"version": 1, "run_id", "created_at", "git_commit",
     "suite": {"name", "digest"}, "dataset": {"name", "version", "digest"},
     "targets": [{"name", "kind", "ref", "resolved", "digest"}],
     "scorers": [{"name", "type", "threshold", "weight"}],
     "repeats", "seed",
     "results": [{"item_id", "target", "repeat", "output", "latency_s", "usage", "cost_usd", "error",
                  "scores": {scorer: {"score", "passed", "reason"}}, "score", "passed"}],
     "summary": {target: {"items", "results", "errors", "pass_rate", "mean_score",
                          "per_scorer": {scorer: {"mean", "pass_rate"}},
                          "latency_p50_s", "latency_p95_s", "prompt_tokens", "completion_tokens", "cost_usd"}},
     "gate": {"passed", "reasons": [...], "min_pass_rate", "max_regression", "baseline_run"} | null,
     "status": "passed" | "failed" | "error"}

A result ``passed`` when every scorer passed; its ``score`` is the weight-averaged scorer score.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

RUN_ID_PREFIX = "evr_"  # run ids, so that a CLI argument can tell a stored run from a file


def new_run_id() -> str:
    return RUN_ID_PREFIX + uuid.uuid4().hex[:20]


RUN_DOCUMENT_VERSION = 1


@dataclass(slots=True, frozen=True)
class EvalItem:
    """One dataset item: ``input`` is a list of chat messages, or a mapping of prompt variables."""

    id: str
    input: list[dict[str, Any]] | dict[str, Any]
    expected: Any = None
    context: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TargetOutput:
    """One target's answer to one item (one repeat). ``error`` set means no answer (nothing to score)."""

    text: str
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    raw: dict[str, Any] | None = None  # the response body, for scorers that need more than the text


@dataclass(slots=True, frozen=True)
class Score:
    score: float
    passed: bool
    reason: str | None = None


class Scorer(Protocol):
    """Judges one output. ``name`` is unique in a suite; ``threshold`` and ``weight`` come from the suite.

    ``score`` may await (a judge calls a model); it must not raise for a wrong answer (that is a low
    score), only for a broken scorer, which fails the run (exit code 2).
    """

    name: str
    threshold: float
    weight: float

    async def score(self, item: EvalItem, output: TargetOutput) -> Score: ...


class ProgressSink(Protocol):
    """Where a long evaluation reports progress: a rich progress bar in the CLI, a job record in a job."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def log(self, line: str) -> None: ...

    @property
    def cancelled(self) -> bool: ...
