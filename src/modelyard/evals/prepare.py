"""Everything a suite needs checked before its first request: dataset, scorers, templates, baseline.

:func:`prepare` turns a :class:`~modelyard.evals.suite.Suite` into a :class:`PreparedSuite` or raises
a :class:`~modelyard.evals.suite.SuiteError` naming the field (``dataset``, ``scorers[2].type``,
``targets[0].prompt_file``, ``gate.baseline``). It sends nothing and stores nothing; whether a target
model exists is checked by the runner's pre-flight (:func:`modelyard.evals.runner.preflight`), which
asks the target's server, still before any evaluation request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelyard.errors import ModelyardError
from modelyard.evals.suite import Suite, SuiteError, TargetSpec
from modelyard.evals.types import EvalItem, Scorer
from modelyard.registry.datasets import DatasetStore, digest_of, load_jsonl
from modelyard.registry.prompt_spec import PromptSpec, bind, compile_spec, load_prompt_file

ScorerFactory = Callable[[dict[str, Any], str], Scorer]  # (spec, where) -> Scorer


@dataclass(slots=True)
class Target:
    """One prepared target. ``kind``: ``model`` | ``adapter`` | ``prompt`` | ``url``."""

    index: int
    spec: TargetSpec
    name: str
    kind: str
    ref: str
    digest: str
    model: str | None
    prompt_spec: PromptSpec | None = None
    resolved: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "ref": self.ref,
            "resolved": self.resolved,
            "digest": self.digest,
        }


@dataclass(slots=True)
class PreparedSuite:
    suite: Suite
    suite_digest: str
    dataset: dict[str, Any]
    items: list[EvalItem]
    targets: list[Target]
    scorers: list[Scorer]
    gate: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    scorer_specs: list[dict[str, Any]] = field(default_factory=list)


def scorer_factory(registry: Any) -> ScorerFactory:
    """Build with a :class:`modelyard.evals.scorers.ScorerRegistry` (the runner adds ``judge`` to it)."""
    return lambda spec, where: registry.build(spec, where)


def _dataset(
    suite: Suite, base_dir: Path, datasets: DatasetStore | None, tenant: str | None
) -> tuple[dict[str, Any], list[EvalItem]]:
    ref = suite.dataset
    if ref.endswith(".jsonl") or "/" in ref:
        path = Path(ref) if Path(ref).is_absolute() else base_dir / ref
        if not path.is_file():
            raise SuiteError(f"dataset: no such file {path}", param="dataset")
        try:
            items = load_jsonl(path)
        except ModelyardError as exc:
            raise SuiteError(f"dataset {path}: {exc.message}", param="dataset") from None
        return {"name": path.stem, "version": None, "digest": digest_of(items), "source": str(path)}, items
    if datasets is None:
        raise SuiteError(
            f"dataset: {ref!r} is not a .jsonl path and no dataset registry is open", param="dataset"
        )
    try:
        info = datasets.get(ref, tenant=tenant)
        items = datasets.items(info)
    except ModelyardError as exc:
        raise SuiteError(f"dataset: {exc.message}", param="dataset") from None
    return {"name": info.name, "version": info.version, "digest": info.digest}, items


def _scorers(suite: Suite, build: ScorerFactory) -> list[Scorer]:
    out: list[Scorer] = []
    for i, spec in enumerate(suite.scorers):
        try:
            scorer = build(dict(spec), f"scorers[{i}]")
        except ModelyardError as exc:
            raise SuiteError(exc.message, param=exc.param or f"scorers[{i}].type") from None
        except (KeyError, ValueError, TypeError, ImportError) as exc:
            raise SuiteError(f"scorers[{i}]: {exc}", param=f"scorers[{i}].type") from None
        if any(s.name == scorer.name for s in out):
            raise SuiteError(
                f"scorers[{i}]: the name {scorer.name!r} is used twice", param=f"scorers[{i}].name"
            )
        out.append(scorer)
    return out


def _kind(spec: TargetSpec) -> str:
    if spec.base_url:
        return "url"
    if spec.prompt or spec.prompt_file:
        return "prompt"
    model = spec.model or ""
    head, sep, tail = model.partition(":")
    return "adapter" if sep and not tail.isdigit() else "model"


def _target(i: int, spec: TargetSpec, base_dir: Path, items: list[EvalItem]) -> Target:
    where = f"targets[{i}]"
    prompt_spec: PromptSpec | None = None
    if spec.prompt_file:
        path = Path(spec.prompt_file) if Path(spec.prompt_file).is_absolute() else base_dir / spec.prompt_file
        try:
            prompt_spec = load_prompt_file(path)
            compile_spec(prompt_spec)
        except OSError as exc:
            raise SuiteError(
                f"{where}.prompt_file: cannot read {path}: {exc.strerror}", param=f"{where}.prompt_file"
            ) from None
        except ModelyardError as exc:
            sub = f" ({exc.param})" if exc.param else ""
            raise SuiteError(
                f"{where}.prompt_file{sub}: {exc.message}", param=f"{where}.prompt_file"
            ) from None
        if prompt_spec.kind == "text" and any(isinstance(it.input, list) for it in items):
            raise SuiteError(
                f"{where}.prompt_file: a text prompt takes variables, the dataset has messages",
                param=f"{where}.prompt_file",
            )
        for item in items:
            if isinstance(item.input, dict):
                try:
                    bind(prompt_spec, item.input)
                except ModelyardError as exc:
                    raise SuiteError(
                        f"{where}.prompt_file: item {item.id!r}: {exc.message}", param=f"{where}.prompt_file"
                    ) from None
    elif not spec.prompt and any(isinstance(it.input, dict) for it in items):
        raise SuiteError(
            f"{where}.prompt: the dataset's items are prompt variables; give the target a prompt",
            param=f"{where}.prompt",
        )
    model = spec.model or (prompt_spec.model if prompt_spec else None)
    if model is None and not spec.prompt:
        raise SuiteError(
            f"{where}.model: no model (neither here nor in the prompt file)", param=f"{where}.model"
        )
    ref = spec.prompt or model or ""
    content = {
        "target": spec.model_dump(mode="json"),
        "prompt": prompt_spec.digest() if prompt_spec else None,
    }
    digest = "sha256:" + hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Target(i, spec, spec.display, _kind(spec), ref, digest, model, prompt_spec)


def gate_spec(suite: Suite) -> dict[str, Any] | None:
    """The suite's gate with ``baseline`` spelled ``baseline_run``, validated by the gate module."""
    if suite.gate is None:
        return None
    from modelyard.evals.gate import parse_gate

    gate = dict(suite.gate)
    if "baseline" in gate:
        if "baseline_run" in gate:
            raise SuiteError(
                "gate.baseline: give `baseline` or `baseline_run`, not both", param="gate.baseline"
            )
        gate["baseline_run"] = gate.pop("baseline")
    try:
        parse_gate(gate)
    except ModelyardError as exc:
        raise SuiteError(exc.message, param=exc.param or "gate") from None
    return gate


def _baseline(
    gate: dict[str, Any] | None, base_dir: Path, load_run: Callable[[str], dict[str, Any] | None] | None
) -> dict[str, Any] | None:
    ref = gate.get("baseline_run") if gate else None
    if not ref:
        return None
    path = Path(ref) if Path(ref).is_absolute() else base_dir / ref
    if ref.endswith(".json") or path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SuiteError(
                f"gate.baseline: cannot read run document {path}: {exc}", param="gate.baseline"
            ) from None
    else:
        doc = load_run(ref) if load_run is not None else None
    if not isinstance(doc, dict) or "results" not in doc:
        raise SuiteError(f"gate.baseline: no run {ref!r}", param="gate.baseline")
    return doc


def prepare(
    suite: Suite,
    *,
    base_dir: Path,
    build_scorer: ScorerFactory,
    datasets: DatasetStore | None = None,
    load_run: Callable[[str], dict[str, Any] | None] | None = None,
    tenant: str | None = None,
) -> PreparedSuite:
    dataset, items = _dataset(suite, base_dir, datasets, tenant)
    scorers = _scorers(suite, build_scorer)
    targets = [_target(i, t, base_dir, items) for i, t in enumerate(suite.targets)]
    gate = gate_spec(suite)
    baseline = _baseline(gate, base_dir, load_run)
    return PreparedSuite(
        suite, suite.digest(), dataset, items, targets, scorers, gate, baseline, list(suite.scorers)
    )
