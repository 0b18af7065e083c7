"""Scorers: each judges one target output for one item (see :class:`modelyard.evals.types.Scorer`).

Build them from a suite's specs with :func:`build_scorer` or a :class:`ScorerRegistry`
(:func:`default_registry` has the built-in types; ``register_scorer`` adds more, the judge among them).
"""

from modelyard.evals.scorers.base import ScorerSpecError, SpecReader
from modelyard.evals.scorers.registry import (
    BUILTIN_TYPES,
    ScorerFactory,
    ScorerRegistry,
    build_scorer,
    default_registry,
)

__all__ = [
    "BUILTIN_TYPES",
    "ScorerFactory",
    "ScorerRegistry",
    "ScorerSpecError",
    "SpecReader",
    "build_scorer",
    "default_registry",
]
