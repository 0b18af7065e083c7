"""``custom``: a scorer by dotted path, ``path: "package.module:attribute"``.

The attribute is either

- a class: instantiated once as ``cls(**params)``; its ``score(item, output)`` (sync or async) judges, or
- a callable: called as ``fn(item, output, **params)`` (sync or async).

It returns a :class:`~modelyard.evals.types.Score`, a number in [0, 1] (passed is ``score >=
threshold``) or a bool (1 or 0). Anything else, or an exception, is a broken scorer: it raises and
the run fails (exit code 2), as the :class:`~modelyard.evals.types.Scorer` contract says.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.evals.scorers.base import SpecReader
from modelyard.evals.types import EvalItem, Score, TargetOutput


def load_attribute(path: str) -> Any:
    """``package.module:attribute`` (nested attributes with dots) -> the object; raises ImportError/AttributeError."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError("must look like 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def to_score(value: Any, threshold: float, where: str) -> Score:
    if isinstance(value, Score):
        return value
    if isinstance(value, bool):
        return Score(float(value), value, None)
    if isinstance(value, int | float) and math.isfinite(value):
        number = float(value)
        return Score(number, number >= threshold, None)
    raise TypeError(f"custom scorer {where} returned {type(value).__name__}; expected Score, float or bool")


@dataclass(slots=True)
class CustomScorer:
    name: str
    threshold: float
    weight: float
    path: str
    call: Callable[..., Any]
    params: dict[str, Any]

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        value = self.call(item, output, **self.params)
        if inspect.isawaitable(value):
            value = await value
        return to_score(value, self.threshold, self.path)


def build_custom(r: SpecReader) -> CustomScorer:
    name, threshold, weight = r.common("custom", 0.5)
    path = r.string("path", required=True)
    assert path is not None
    params = r.raw("params", {})
    if not isinstance(params, Mapping):
        raise r.fail("params", "must be a mapping of keyword arguments")
    try:
        target = load_attribute(path)
    except (ImportError, AttributeError, ValueError) as exc:
        raise r.fail("path", f"cannot load {path!r}: {exc}") from exc
    kwargs = dict(params)
    if inspect.isclass(target):
        try:
            instance: Any = target(**kwargs)
        except TypeError as exc:
            raise r.fail("params", f"do not fit {path}: {exc}") from exc
        call: Callable[..., Any] = getattr(instance, "score", None) or instance
        if not callable(call):
            raise r.fail("path", f"{path} has no score method and its instances are not callable")
        kwargs = {}
    elif callable(target):
        call = target
    else:
        raise r.fail("path", f"{path!r} is neither a class nor a callable")
    return CustomScorer(name, threshold, weight, path, call, kwargs)
