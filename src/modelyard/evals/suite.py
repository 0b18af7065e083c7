"""An eval suite: YAML in, a validated :class:`Suite` out, with errors that name the field path.

::

    name: capitals
    dataset: capitals@1              # NAME@VERSION in the dataset registry, or a path to a .jsonl file
    targets:
      - model: smollm2-135m-instruct # name, name@alias, name:version, or base:adapter
        name: smol                   # display name (default: model, prompt or prompt_file)
        parameters: {temperature: 0, max_tokens: 16}
      - prompt: capital-qa@production  # a registry prompt (NAME@label or NAME:version), sent as `prompt`
      - prompt_file: prompts/qa.yaml   # a local prompt file, rendered here (relative to the suite)
        model: smollm2-135m-instruct
        base_url: http://vllm:8000/v1  # any OpenAI-compatible server (else the run's --url or in process)
        api_key_env: VLLM_API_KEY
    scorers:                         # specs for build_scorer (``type`` + the scorer's own fields)
      - {type: contains, name: has-answer, threshold: 1.0, weight: 1.0}
    repeats: 1
    concurrency: 4
    seed: 0                          # repeat r sends seed + r
    timeout: 60                      # seconds per request
    retries: 2                       # on 429 / 5xx / connection errors, with exponential backoff
    gate: {min_pass_rate: 0.7, max_regression: 0.05, baseline: RUN_ID or path/to/run.json}
                                     # (see modelyard.evals.gate; `baseline_run` is accepted too)

:func:`parse_suite` only checks the shape; :func:`modelyard.evals.prepare.prepare` then resolves the
dataset, builds the scorers and compiles the templates, all before any request is sent. Every error
is a :class:`SuiteError` whose ``param`` is the field path (``targets[1].model``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelyard.errors import InvalidRequest

MAX_TARGETS = 32
MAX_SCORERS = 64


class SuiteError(InvalidRequest):
    """A suite that cannot run: ``param`` names the field (exit code 2, nothing stored)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetSpec(_Strict):
    model: str | None = Field(default=None, min_length=1, max_length=256)
    prompt: str | None = Field(default=None, min_length=1, max_length=256)
    prompt_file: str | None = Field(default=None, min_length=1)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=128)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _something_to_call(self) -> TargetSpec:
        if self.model is None and self.prompt is None:
            raise ValueError("a target needs a `model` or a registry `prompt` (whose default model is used)")
        if self.prompt is not None and self.prompt_file is not None:
            raise ValueError("give `prompt` (registry) or `prompt_file` (local), not both")
        return self

    @property
    def display(self) -> str:
        return self.name or self.prompt or self.model or self.prompt_file or "target"


class Suite(_Strict):
    name: str = Field(min_length=1, max_length=128)
    dataset: str = Field(min_length=1)
    targets: list[TargetSpec] = Field(min_length=1, max_length=MAX_TARGETS)
    scorers: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_SCORERS)
    repeats: int = Field(default=1, ge=1, le=100)
    concurrency: int = Field(default=4, ge=1, le=256)
    seed: int = 0
    timeout: float = Field(default=60.0, gt=0, le=3600)
    retries: int = Field(default=2, ge=0, le=10)
    gate: dict[str, Any] | None = None  # read by modelyard.evals.gate.parse_gate in prepare

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        names = [t.display for t in self.targets]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"targets[{i}]: display name {n!r} is used twice (set `name`)")
        for i, s in enumerate(self.scorers):
            if not isinstance(s.get("type"), str):
                raise ValueError(f"scorers[{i}].type: every scorer names its `type`")
        return self

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the validated suite."""
        body = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(body).hexdigest()


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "suite"


def suite_from_dict(raw: Any) -> Suite:
    """Validate a parsed suite (YAML or an API body); the first error names its field path."""
    if not isinstance(raw, dict):
        raise SuiteError("a suite is a mapping with name, dataset, targets and scorers", param="suite")
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if p not in ("function-after",))
        msg = str(err["msg"]).removeprefix("Value error, ")
        path = _path(loc)
        if msg.startswith(("targets[", "scorers[")):
            path, _, msg = msg.partition(": ")
        raise SuiteError(f"{path}: {msg}", param=path) from None


def load_suite(path: str | Path) -> Suite:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"cannot read suite {p}: {exc.strerror}", param="suite") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError(f"{p}: not valid YAML{where}: {problem}", param="suite") from None
    return suite_from_dict(raw)
