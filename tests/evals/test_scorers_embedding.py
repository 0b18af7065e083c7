"""``embedding_similarity`` with the real packaged MiniLM (loaded once for the module)."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.evals.scorers import ScorerRegistry, default_registry
from modelyard.evals.types import EvalItem, TargetOutput

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry() -> ScorerRegistry:
    return default_registry()


async def test_paraphrase_scores_above_unrelated_and_model_loads_once(registry: ScorerRegistry) -> None:
    scorer = registry.build({"type": "embedding_similarity", "threshold": 0.6})
    again = registry.build({"type": "embedding_similarity", "name": "again"})
    item = EvalItem("q", [], ["Paris is the capital of France."])
    close, far = await asyncio.gather(
        scorer.score(item, TargetOutput("The capital of France is Paris.", 0.1)),
        again.score(item, TargetOutput("Bananas are rich in potassium.", 0.1)),
    )
    assert close.passed and close.score > 0.8
    assert not far.passed and far.score < 0.4
    assert len(registry.embedders) == 1
    assert scorer.embedder is again.embedder  # type: ignore[attr-defined]
    identical = await scorer.score(item, TargetOutput("Paris is the capital of France.", 0.1))
    assert identical.score == pytest.approx(1.0, abs=1e-5)


async def test_missing_expected_fails_without_loading(registry: ScorerRegistry) -> None:
    fresh = default_registry()
    score = await fresh.build({"type": "embedding_similarity"}).score(
        EvalItem("q", []), TargetOutput("x", 0.1)
    )
    assert not score.passed
    assert all(e.instance is None for e in fresh.embedders.values())
