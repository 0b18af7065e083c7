"""Scorers of structure: the answer is JSON (``json_valid``), and it satisfies a JSON Schema (``json_schema``).

A Markdown code fence around the answer (```` ```json ... ``` ````) is removed first unless
``strip_code_fence: false``. Schemas are checked with the ``jsonschema`` library (draft chosen by the
schema's ``$schema``, 2020-12 by default) when the suite is built, so a bad schema fails early.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from modelyard.evals.scorers.base import SpecReader
from modelyard.evals.types import EvalItem, Score, TargetOutput

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def _parse(text: str, strip_fence: bool) -> tuple[Any, str | None]:
    if strip_fence:
        match = _FENCE.match(text)
        if match:
            text = match.group(1)
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"not JSON: {exc}"


@dataclass(slots=True)
class JsonValidScorer:
    """1 when the answer parses as JSON."""

    name: str
    threshold: float
    weight: float
    strip_code_fence: bool

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        _, error = _parse(output.text, self.strip_code_fence)
        return Score(0.0, False, error) if error else Score(1.0, True, None)


@dataclass(slots=True)
class JsonSchemaScorer:
    """1 when the answer is JSON that validates against ``schema``; the reason names the first violation."""

    name: str
    threshold: float
    weight: float
    strip_code_fence: bool
    validator: Any

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        value, error = _parse(output.text, self.strip_code_fence)
        if error:
            return Score(0.0, False, error)
        problem = jsonschema.exceptions.best_match(self.validator.iter_errors(value))
        if problem is None:
            return Score(1.0, True, None)
        where = "/".join(str(p) for p in problem.absolute_path) or "(root)"
        return Score(0.0, False, f"schema violation at {where}: {problem.message}")


def build_json_valid(r: SpecReader) -> JsonValidScorer:
    name, threshold, weight = r.common("json_valid", 1.0)
    return JsonValidScorer(name, threshold, weight, r.boolean("strip_code_fence", True))


def build_json_schema(r: SpecReader) -> JsonSchemaScorer:
    name, threshold, weight = r.common("json_schema", 1.0)
    schema = r.raw("schema")
    if not isinstance(schema, dict | bool):
        raise r.fail("schema", "is required: a JSON Schema object")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise r.fail("schema", f"is not a valid JSON Schema: {exc.message}") from exc
    return JsonSchemaScorer(name, threshold, weight, r.boolean("strip_code_fence", True), cls(schema))
