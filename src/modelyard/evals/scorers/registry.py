"""The scorer registry: a suite's ``scorers:`` specs become :class:`~modelyard.evals.types.Scorer` objects.

A :class:`ScorerRegistry` maps a ``type`` to a factory ``factory(reader: SpecReader) -> Scorer``.
:func:`default_registry` holds the built-in types (:data:`BUILTIN_TYPES`); whoever needs more (the
runner adds ``judge`` with its model client bound in) calls :meth:`ScorerRegistry.register_scorer`
on its own registry, so there is no process-wide mutable table. :meth:`ScorerRegistry.build` reads
the common fields, calls the factory, then rejects parameters the factory did not read; every
error is a :class:`~modelyard.evals.scorers.base.ScorerSpecError` naming the field
(``scorers[2].type``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from modelyard.embeddings import Embedder
from modelyard.evals.scorers import budget, custom, refusal, structured, text
from modelyard.evals.scorers.base import ScorerSpecError, SpecReader
from modelyard.evals.scorers.embedding import DEFAULT_SOURCE, LazyEmbedder, build_embedding_similarity
from modelyard.evals.types import Scorer

ScorerFactory = Callable[[SpecReader], Scorer]

BUILTIN_TYPES: tuple[str, ...] = (
    "equals",
    "contains",
    "regex",
    "json_valid",
    "json_schema",
    "levenshtein",
    "rouge_l",
    "embedding_similarity",
    "latency",
    "tokens",
    "cost",
    "refusal",
    "custom",
)


@dataclass(slots=True)
class ScorerRegistry:
    """Scorer types by name, and the embedders its ``embedding_similarity`` scorers share (one per source)."""

    factories: dict[str, ScorerFactory] = field(default_factory=dict)
    embedders: dict[str, LazyEmbedder] = field(default_factory=dict)

    def register_scorer(self, type_name: str, factory: ScorerFactory, *, replace: bool = False) -> None:
        """Add a scorer type; registering a taken name raises unless ``replace``."""
        if type_name in self.factories and not replace:
            raise ValueError(f"scorer type {type_name!r} is already registered")
        self.factories[type_name] = factory

    @property
    def types(self) -> list[str]:
        return sorted(self.factories)

    def build(self, spec: Any, where: str = "scorer") -> Scorer:
        reader = SpecReader.of(spec, where)
        type_name = reader.spec.get("type")
        if not isinstance(type_name, str) or not type_name:
            raise reader.fail("type", f"is required; one of {', '.join(self.types)}")
        factory = self.factories.get(type_name)
        if factory is None:
            raise reader.fail(
                "type", f"unknown scorer type {type_name!r}; use one of {', '.join(self.types)}"
            )
        scorer = factory(reader)
        reader.finish()
        return scorer

    def build_all(self, specs: Any, where: str = "scorers") -> list[Scorer]:
        """Build a suite's list of scorers; names must be unique (``scorers[3].name`` otherwise)."""
        if not isinstance(specs, list) or not specs:
            raise ScorerSpecError(f"{where}: a non-empty list of scorers is required", param=where)
        scorers: list[Scorer] = []
        seen: dict[str, int] = {}
        for index, spec in enumerate(specs):
            scorer = self.build(spec, f"{where}[{index}]")
            if scorer.name in seen:
                param = f"{where}[{index}].name"
                raise ScorerSpecError(
                    f"{param}: duplicate scorer name {scorer.name!r} (also {where}[{seen[scorer.name]}]);"
                    " give one of them a 'name'",
                    param=param,
                )
            seen[scorer.name] = index
            scorers.append(scorer)
        return scorers


def _builtins(registry: ScorerRegistry) -> Iterable[tuple[str, ScorerFactory]]:
    return (
        ("equals", text.build_equals),
        ("contains", text.build_contains),
        ("regex", text.build_regex),
        ("levenshtein", text.build_levenshtein),
        ("rouge_l", text.build_rouge_l),
        ("json_valid", structured.build_json_valid),
        ("json_schema", structured.build_json_schema),
        ("embedding_similarity", partial(build_embedding_similarity, embedders=registry.embedders)),
        ("latency", budget.build_latency),
        ("tokens", budget.build_tokens),
        ("cost", budget.build_cost),
        ("refusal", refusal.build_refusal),
        ("custom", custom.build_custom),
    )


def default_registry(*, embedders: Mapping[str, Embedder] | None = None) -> ScorerRegistry:
    """A new registry with the built-in types. ``embedders`` (source -> an already loaded embedder,
    e.g. the server's own MiniLM) are reused instead of loading another copy."""
    registry = ScorerRegistry()
    for source, instance in (embedders or {}).items():
        registry.embedders[source] = LazyEmbedder(source, instance)
    for type_name, factory in _builtins(registry):
        registry.register_scorer(type_name, factory)
    return registry


def build_scorer(spec: Any, *, registry: ScorerRegistry | None = None, where: str = "scorer") -> Scorer:
    """One scorer from its spec, with ``registry`` or a fresh :func:`default_registry`."""
    return (registry or default_registry()).build(spec, where)


__all__ = [
    "BUILTIN_TYPES",
    "DEFAULT_SOURCE",
    "ScorerFactory",
    "ScorerRegistry",
    "build_scorer",
    "default_registry",
]
