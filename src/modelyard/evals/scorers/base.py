"""What every scorer shares: reading its spec (errors name the field), the common fields, expected values.

A scorer spec is a mapping from a suite's ``scorers:`` list::

    {"type": "contains", "name": "mentions_paris", "threshold": 1.0, "weight": 2.0, "values": ["Paris"]}

``name`` defaults to ``type``; ``threshold`` to the type's default; ``weight`` to 1.0. Any other key
is a parameter of the type; an unknown key, a wrong type or a bad value raises :class:`ScorerSpecError`
whose ``param`` is the dotted field, say ``scorers[2].pattern``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.evals.types import EvalItem

COMMON_KEYS = frozenset({"type", "name", "threshold", "weight"})


class ScorerSpecError(InvalidRequest):
    """A scorer spec that cannot be built; ``param`` names the field (``scorers[2].type``)."""

    code = "invalid_scorer"


@dataclass(slots=True)
class SpecReader:
    """Typed access to one scorer spec; every error names ``<where>.<key>``.

    Call :meth:`finish` after reading the parameters: it rejects keys no one read.
    """

    spec: Mapping[str, Any]
    where: str
    read: set[str]

    @classmethod
    def of(cls, spec: Any, where: str) -> SpecReader:
        if not isinstance(spec, Mapping):
            raise ScorerSpecError(f"{where}: a scorer must be a mapping with a 'type'", param=where)
        return cls(spec, where, set(COMMON_KEYS))

    def field(self, key: str) -> str:
        return f"{self.where}.{key}"

    def fail(self, key: str, message: str) -> ScorerSpecError:
        return ScorerSpecError(f"{self.field(key)}: {message}", param=self.field(key))

    def has(self, key: str) -> bool:
        return key in self.spec

    def raw(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.spec.get(key, default)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key, default)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {type(value).__name__}")
        return value

    def number(self, key: str, default: float | None = None, *, minimum: float | None = None) -> float | None:
        value = self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, not {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, not {value!r}")
        return float(value)

    def required_number(self, key: str, *, minimum: float | None = None) -> float:
        value = self.number(key, minimum=minimum)
        if value is None:
            raise self.fail(key, "is required")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    def strings(self, key: str, *, required: bool = False) -> list[str] | None:
        """A string or a list of strings (a single string is a one-element list)."""
        value = self.raw(key)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a string or a non-empty list of strings")
        return list(value)

    def common(self, type_name: str, default_threshold: float) -> tuple[str, float, float]:
        """``(name, threshold, weight)`` with the type's default threshold."""
        name = self.string("name", type_name) or type_name
        if not name.strip():
            raise self.fail("name", "must not be empty")
        threshold = self.number("threshold", default_threshold)
        assert threshold is not None
        if not 0.0 <= threshold <= 1.0:
            raise self.fail("threshold", f"must be in [0, 1], not {threshold!r}")
        weight = self.number("weight", 1.0, minimum=0.0)
        assert weight is not None
        return name, threshold, weight

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.spec if k not in self.read)
        if unknown:
            raise self.fail(unknown[0], f"unknown parameter for scorer type {self.spec.get('type')!r}")


def expected_texts(item: EvalItem, override: Any = None) -> list[str]:
    """The expected answers as strings: a string, any-of a list, or a JSON value written compactly.

    Empty when the item has no expected value (text scorers then fail with a reason, never raise).
    """
    value = item.expected if override is None else override
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return [json.dumps(value, sort_keys=True, ensure_ascii=False)]


def clamp01(value: float) -> float:
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value
