"""Lint one prompt: :func:`lint_spec` runs every rule of :mod:`.rules` over a parsed :class:`PromptSpec`.

``lint_spec(spec, source_text, origin)`` is the whole core: a prompt file, a registry version
(``source_text`` = :func:`spec_source` of it) or an API body go through the same checks. It returns
every finding, suppressed ones included (``Finding.suppressed``), sorted by position.
:func:`lint_file` adds reading and validating a file (PL000 when it is not a prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from modelyard.errors import InvalidRequest
from modelyard.registry.lint.context import ModelCatalog, ModelWindow
from modelyard.registry.lint.rules import Finding
from modelyard.registry.lint.source import SourceMap, Suppressions
from modelyard.registry.lint.templates import first_uses, free_names, interpolated, line_offset
from modelyard.registry.lint.textscan import find_hidden_unicode, find_secrets
from modelyard.registry.prompt_spec import PromptSpec, RenderError, render, sandbox, spec_from_dict

_SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(slots=True)
class _Collector:
    """Turns rule hits at (field, offset) into positioned findings, applying the suppressions."""

    origin: str
    smap: SourceMap
    sup: Suppressions
    found: list[Finding] = field(default_factory=list)

    def at_text(
        self, rule: str, message: str, where: str, value: str, offset: int, needle: str | None
    ) -> None:
        line, col = self.smap.locate(where, value, offset, needle)
        self._add(rule, message, where, line, col, value.count("\n", 0, offset))

    def at_field(self, rule: str, message: str, where: str) -> None:
        line, col = self.smap.field_position(where)
        self._add(rule, message, where, line, col, None)

    def _add(self, rule: str, message: str, where: str, line: int, col: int, tpl_line: int | None) -> None:
        suppressed = self.sup.covers(rule, line, where, tpl_line)
        self.found.append(Finding(rule, message, self.origin, line, col, where, suppressed))


def spec_source(spec: PromptSpec) -> str:
    """A YAML rendering of ``spec`` whose field positions lint can report (for registry versions)."""
    return yaml.safe_dump({"name": spec.name, **spec.content()}, sort_keys=False, allow_unicode=True)


def lint_spec(
    spec: PromptSpec,
    source_text: str | None,
    origin: str,
    *,
    model: str | None = None,
    catalog: ModelCatalog | None = None,
) -> list[Finding]:
    """Every finding of ``spec``; ``source_text`` is the YAML it came from (positions, suppressions).

    ``model`` overrides the prompt's own ``model`` as the context-window target; without a
    ``catalog`` the window check reports PL005 (nothing to count with).
    """
    smap = SourceMap(source_text if source_text is not None else spec_source(spec))
    sup = smap.suppressions()
    for where, template in spec.templates():
        sup.add_template(where, template)
    out = _Collector(origin, smap, sup)
    env = sandbox()
    roles = {f"messages[{i}].content": m.role for i, m in enumerate(spec.messages or [])}
    declared = {v.name for v in spec.variables}
    used: set[str] = set()
    compiled = True
    for where, template in spec.templates():
        try:
            tree = env.parse(template)
        except jinja2.TemplateSyntaxError as exc:
            compiled = False
            out.at_text(
                "PL001",
                f"template syntax error: {exc.message}",
                where,
                template,
                line_offset(template, exc.lineno),
                None,
            )
            continue
        names = free_names(env, tree)
        used |= names
        for use in first_uses(template, tree, names - declared):
            out.at_text(
                "PL002", f"`{use.name}` is used but not declared", where, template, use.offset, use.name
            )
        if roles.get(where) in _SYSTEM_ROLES:
            for use in interpolated(template, tree, names):
                message = f"variable `{use.name}` is interpolated into a {roles[where]} message"
                out.at_text("PL007", message, where, template, use.offset, use.name)
    if compiled:
        for i, var in enumerate(spec.variables):
            if var.name not in used:
                out.at_field("PL003", f"variable `{var.name}` is declared but never used", f"variables[{i}]")
    for where, text in _texts(spec):
        for hit in find_secrets(text) + find_hidden_unicode(text):
            out.at_text(hit.rule, hit.message, where, text, hit.offset, hit.needle)
    max_tokens = _max_tokens(spec)
    if max_tokens is None:
        out.at_field(
            "PL006", "no `max_tokens` in `parameters`", "parameters" if "parameters" in smap.keys else "name"
        )
    if compiled and not used - declared:  # an undeclared name fails rendering: PL002 says so already
        _check_render_and_window(spec, model or spec.model, max_tokens, catalog, out)
    return sorted(out.found, key=lambda f: (f.line, f.column, f.rule))


def _texts(spec: PromptSpec) -> list[tuple[str, str]]:
    """Every string a prompt stores: templates, string defaults and string sample values."""
    texts = list(spec.templates())
    texts += [
        (f"variables[{i}].default", v.default)
        for i, v in enumerate(spec.variables)
        if isinstance(v.default, str)
    ]
    texts += [(f"sample_variables.{k}", v) for k, v in spec.sample_variables.items() if isinstance(v, str)]
    return texts


def _max_tokens(spec: PromptSpec) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = spec.parameters.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _check_render_and_window(
    spec: PromptSpec,
    target: str | None,
    max_tokens: int | None,
    catalog: ModelCatalog | None,
    out: _Collector,
) -> None:
    anchor = next(
        (f"parameters.{k}" for k in ("max_completion_tokens", "max_tokens") if k in spec.parameters), "model"
    )
    missing = [v.name for v in spec.variables if not v.has_default and v.name not in spec.sample_variables]
    rendered: list[dict[str, str]] | str | None = None
    if not missing:  # rendering is checked with or without a target model
        try:
            rendered = render(spec, spec.sample_variables)
        except RenderError as exc:
            out.at_field("PL011", exc.message, _render_anchor(exc))
            return
    if target is None:
        out.at_field("PL005", "no target model: the context window is not checked", "name")
        return
    window = catalog.window(target) if catalog is not None else None
    if not isinstance(window, ModelWindow):
        reason = window.reason if window is not None else "no model catalog given"
        out.at_field("PL005", f"context window not checked: {reason}", "model" if spec.model else "name")
        return
    if rendered is None:
        message = f"context window not checked: `{missing[0]}` has no default and no sample value"
        out.at_field("PL005", message + " (add it to `sample_variables`)", "variables")
        return
    try:
        tokens = window.count(rendered)
    except Exception as exc:  # e.g. a chat template that rejects the roles: report, do not crash
        out.at_field("PL005", f"context window not checked: {window.name} cannot tokenize it ({exc})", "name")
        return
    total = tokens + (max_tokens or 0)
    if total > window.context_length or (max_tokens is None and tokens >= window.context_length):
        budget = f" + max_tokens {max_tokens} = {total}" if max_tokens is not None else ""
        message = (
            f"rendered prompt is {tokens} tokens on {window.name}{budget}, "
            f"over its context window of {window.context_length}"
        )
        out.at_field("PL004", message, anchor if max_tokens is not None else "name")


def _render_anchor(exc: InvalidRequest) -> str:
    param = exc.param or ""
    if param.startswith("prompt.variables."):
        return "sample_variables." + param.removeprefix("prompt.variables.")
    return param.removeprefix("prompt.") or "name"


@dataclass(slots=True)
class FileResult:
    """One linted file: its findings, or the reason it is not a prompt (then ``findings`` is PL000)."""

    path: str
    findings: list[Finding]
    invalid: bool = False


def lint_file(
    path: str | Path, *, model: str | None = None, catalog: ModelCatalog | None = None
) -> FileResult:
    """Read, validate and lint one prompt file; a file that is not a prompt is one PL000 finding."""
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return invalid_result(origin, f"cannot read the file: {exc}", 1, 1)
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        return invalid_result(origin, f"not valid YAML: {problem or exc}", line, col)
    try:
        spec = spec_from_dict(raw)
    except InvalidRequest as exc:
        where = exc.param or "name"
        line, col = SourceMap(text).field_position(where)
        return invalid_result(origin, f"not a valid prompt: {exc.message} (at `{where}`)", line, col, where)
    return FileResult(origin, lint_spec(spec, text, origin, model=model, catalog=catalog))


def invalid_result(origin: str, message: str, line: int, col: int, where: str = "") -> FileResult:
    """The result of something that is not a prompt: one PL000 finding."""
    return FileResult(origin, [Finding("PL000", message, origin, line, col, where)], invalid=True)
