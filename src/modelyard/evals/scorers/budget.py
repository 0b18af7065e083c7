"""Bounds on what an answer cost: ``latency`` (``max_s``), ``tokens`` (``max`` completion tokens), ``cost`` (``max_usd``).

Each passes when the measured value is within its bound. The score is graded so that a mean says how
far over budget a target runs: 1 within the bound, ``bound / value`` over it. An unknown cost
(``cost_usd`` is null: no price registered) passes with a reason, unless ``missing: fail``.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.evals.scorers.base import SpecReader
from modelyard.evals.types import EvalItem, Score, TargetOutput


def _bounded(value: float, bound: float, unit: str) -> Score:
    if value <= bound:
        return Score(1.0, True, None)
    return Score(
        bound / value if value > 0 else 0.0, False, f"{value:g}{unit} over the bound {bound:g}{unit}"
    )


@dataclass(slots=True)
class LatencyScorer:
    name: str
    threshold: float
    weight: float
    max_s: float

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        return _bounded(round(output.latency_s, 4), self.max_s, " s")


@dataclass(slots=True)
class TokensScorer:
    name: str
    threshold: float
    weight: float
    max_tokens: int

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        return _bounded(float(output.completion_tokens), float(self.max_tokens), " tokens")


@dataclass(slots=True)
class CostScorer:
    name: str
    threshold: float
    weight: float
    max_usd: float
    missing_passes: bool

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        if output.cost_usd is None:
            return Score(
                float(self.missing_passes), self.missing_passes, "cost unknown (no price registered)"
            )
        return _bounded(output.cost_usd, self.max_usd, " USD")


def build_latency(r: SpecReader) -> LatencyScorer:
    name, threshold, weight = r.common("latency", 1.0)
    return LatencyScorer(name, threshold, weight, r.required_number("max_s", minimum=0.0))


def build_tokens(r: SpecReader) -> TokensScorer:
    name, threshold, weight = r.common("tokens", 1.0)
    bound = r.required_number("max", minimum=0.0)
    if bound != int(bound):
        raise r.fail("max", f"must be a whole number of tokens, not {bound!r}")
    return TokensScorer(name, threshold, weight, int(bound))


def build_cost(r: SpecReader) -> CostScorer:
    name, threshold, weight = r.common("cost", 1.0)
    bound = r.required_number("max_usd", minimum=0.0)
    return CostScorer(name, threshold, weight, bound, r.choice("missing", ("pass", "fail"), "pass") == "pass")
