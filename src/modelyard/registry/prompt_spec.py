"""A prompt version's content: its template, declared variables and defaults, and how it renders.

A prompt file (YAML) holds one :class:`PromptSpec`::

    name: capital-qa
    messages:                     # a chat template, or `text:` for /v1/completions (one of the two)
      - role: system
        content: You answer with the city's name only.
      - role: user
        content: "What is the capital of {{ country }}?"
    variables:
      - name: country
        type: string              # optional: string | number | integer | boolean | array | object
        default: France           # optional; a variable without a default must be passed
    model: smollm2-135m-instruct  # optional default model
    parameters: {temperature: 0, max_tokens: 16}   # optional default sampling parameters
    response_format: null         # optional, as in the OpenAI request
    sample_variables: {country: Japan}   # optional: what lint renders with (else the defaults)

Templates render in Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`: a template cannot reach Python internals, and a variable that is
neither passed nor defaulted is an error naming it, never an empty string. The digest is the SHA-256
of the canonical JSON of the content fields (not the name), so an unchanged push is recognisable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import orjson
import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from modelyard.errors import InvalidRequest

ROLES = frozenset({"system", "developer", "user", "assistant"})
VARIABLE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
PARAMETERS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "stop",
        "seed",
        "n",
    }
)
MAX_TEMPLATE_CHARS = 64_000  # per message or text template
MAX_MESSAGES = 64
MAX_VARIABLES = 64
MAX_RENDERED_CHARS = 256_000


class PromptSpecError(InvalidRequest):
    """A prompt file or version body that is not a valid prompt (400, naming the field)."""


class RenderError(InvalidRequest):
    """Rendering failed: a missing or mistyped variable, or a template error (400, naming it)."""


@dataclass(slots=True, frozen=True)
class Variable:
    name: str
    type: str | None = None
    default: Any = None
    has_default: bool = False


@dataclass(slots=True, frozen=True)
class TemplateMessage:
    role: str
    content: str


@dataclass(slots=True)
class PromptSpec:
    """One prompt version's content; ``messages`` xor ``text``."""

    name: str
    messages: list[TemplateMessage] | None = None
    text: str | None = None
    variables: list[Variable] = field(default_factory=list)
    model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    response_format: dict[str, Any] | None = None
    sample_variables: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``chat`` or ``text``."""
        return "chat" if self.messages is not None else "text"

    def templates(self) -> list[tuple[str, str]]:
        """(where, template source) for each template: ``messages[i].content`` or ``text``."""
        if self.messages is not None:
            return [(f"messages[{i}].content", m.content) for i, m in enumerate(self.messages)]
        return [("text", self.text or "")]

    def content(self) -> dict[str, Any]:
        """The content fields as plain JSON (what is stored and digested; no name)."""
        return {
            "messages": None
            if self.messages is None
            else [{"role": m.role, "content": m.content} for m in self.messages],
            "text": self.text,
            "variables": [
                {"name": v.name, "type": v.type, **({"default": v.default} if v.has_default else {})}
                for v in self.variables
            ],
            "model": self.model,
            "parameters": self.parameters,
            "response_format": self.response_format,
            "sample_variables": self.sample_variables,
        }

    def digest(self) -> str:
        return (
            "sha256:" + hashlib.sha256(orjson.dumps(self.content(), option=orjson.OPT_SORT_KEYS)).hexdigest()
        )


def sandbox() -> ImmutableSandboxedEnvironment:
    """The one environment templates compile in: sandboxed, strict about undefined names, no autoescape."""
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def _fail(msg: str, where: str) -> PromptSpecError:
    return PromptSpecError(msg, param=where)


def _variable(raw: Any, where: str) -> Variable:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].isidentifier():
        raise _fail("a variable is {name: identifier, type?: ..., default?: ...}", where)
    unknown = set(raw) - {"name", "type", "default", "description"}
    if unknown:
        raise _fail(f"unknown variable field(s): {', '.join(sorted(unknown))}", where)
    vtype = raw.get("type")
    if vtype is not None and vtype not in VARIABLE_TYPES:
        raise _fail(f"type `{vtype}` is not one of {', '.join(VARIABLE_TYPES)}", f"{where}.type")
    var = Variable(raw["name"], vtype, raw.get("default"), "default" in raw)
    if var.has_default and var.default is not None:
        check_type(var, var.default, f"{where}.default")
    return var


def spec_from_dict(raw: Any, name: str | None = None) -> PromptSpec:
    """Validate a prompt's content (a parsed file or an API body); ``name`` overrides ``raw["name"]``."""
    if not isinstance(raw, dict):
        raise _fail("a prompt is a mapping with `messages` or `text`", "prompt")
    known = {
        "name",
        "messages",
        "text",
        "variables",
        "model",
        "parameters",
        "response_format",
        "sample_variables",
    }
    known |= {"commit_message", "labels", "description"}  # accepted alongside (used by the registry)
    unknown = set(raw) - known
    if unknown:
        raise _fail(f"unknown field(s): {', '.join(sorted(unknown))}", sorted(unknown)[0])
    name = name or raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail("a prompt needs a `name`", "name")
    if ("messages" in raw) == ("text" in raw):
        raise _fail("give exactly one of `messages` (chat) or `text` (completions)", "messages")
    messages: list[TemplateMessage] | None = None
    text: str | None = None
    if "messages" in raw:
        items = raw["messages"]
        if not isinstance(items, list) or not items:
            raise _fail("`messages` is a non-empty list of {role, content}", "messages")
        if len(items) > MAX_MESSAGES:
            raise _fail(f"at most {MAX_MESSAGES} messages", "messages")
        messages = []
        for i, m in enumerate(items):
            if (
                not isinstance(m, dict)
                or set(m) - {"role", "content"}
                or not isinstance(m.get("content"), str)
            ):
                raise _fail("a message is {role, content: string}", f"messages[{i}]")
            if m.get("role") not in ROLES:
                raise _fail(f"role must be one of {', '.join(sorted(ROLES))}", f"messages[{i}].role")
            messages.append(TemplateMessage(m["role"], m["content"]))
    else:
        if not isinstance(raw["text"], str):
            raise _fail("`text` is a string template", "text")
        text = raw["text"]
    variables_raw = raw.get("variables") or []
    if not isinstance(variables_raw, list) or len(variables_raw) > MAX_VARIABLES:
        raise _fail(f"`variables` is a list of at most {MAX_VARIABLES}", "variables")
    variables = [_variable(v, f"variables[{i}]") for i, v in enumerate(variables_raw)]
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        raise _fail("a variable is declared twice", "variables")
    params = raw.get("parameters") or {}
    if not isinstance(params, dict) or set(params) - PARAMETERS:
        bad = sorted(set(params) - PARAMETERS) if isinstance(params, dict) else []
        raise _fail(f"unknown parameter(s): {', '.join(bad) or params!r}", "parameters")
    response_format = raw.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise _fail("`response_format` is an object, as in the OpenAI request", "response_format")
    sample = raw.get("sample_variables") or {}
    if not isinstance(sample, dict):
        raise _fail("`sample_variables` is a mapping", "sample_variables")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise _fail("`model` is a model name", "model")
    spec = PromptSpec(name, messages, text, variables, model, dict(params), response_format, dict(sample))
    for where, source in spec.templates():
        if len(source) > MAX_TEMPLATE_CHARS:
            raise _fail(f"a template is at most {MAX_TEMPLATE_CHARS} characters", where)
    return spec


def load_prompt_file(path: str | Path) -> PromptSpec:
    """Parse and validate one prompt YAML file (templates are not compiled here: see :func:`compile_spec`)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptSpecError(f"{path}: not valid YAML: {exc}", param="prompt") from None
    return spec_from_dict(raw)


def template_variables(source: str, env: jinja2.Environment | None = None) -> set[str]:
    """The undeclared names a template reads (raises :class:`jinja2.TemplateSyntaxError`)."""
    env = env or sandbox()
    return set(meta.find_undeclared_variables(env.parse(source)))


def compile_spec(spec: PromptSpec) -> None:
    """Raise :class:`PromptSpecError` naming the first template that does not compile."""
    env = sandbox()
    for where, source in spec.templates():
        try:
            env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise _fail(f"template syntax error at line {exc.lineno}: {exc.message}", where) from None


def check_type(var: Variable, value: Any, where: str) -> None:
    if var.type is None:
        return
    ok = isinstance(value, VARIABLE_TYPES[var.type]) and not (
        var.type in {"number", "integer"} and isinstance(value, bool)
    )
    if not ok:
        raise RenderError(f"variable `{var.name}` must be {var.type}", param=where)


def bind(
    spec: PromptSpec, variables: dict[str, Any] | None, param: str = "prompt.variables"
) -> dict[str, Any]:
    """Declared defaults overlaid with ``variables``; unknown, missing or mistyped names are 400s."""
    given = dict(variables or {})
    declared = {v.name: v for v in spec.variables}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise RenderError(
            f"prompt `{spec.name}` declares no variable `{unknown[0]}`", param=f"{param}.{unknown[0]}"
        )
    bound: dict[str, Any] = {}
    for name, var in declared.items():
        if name in given:
            check_type(var, given[name], f"{param}.{name}")
            bound[name] = given[name]
        elif var.has_default:
            bound[name] = var.default
        else:
            raise RenderError(f"prompt `{spec.name}` needs the variable `{name}`", param=f"{param}.{name}")
    return bound


def render(spec: PromptSpec, variables: dict[str, Any] | None = None) -> list[dict[str, str]] | str:
    """The rendered messages (chat) or text (completions) for ``variables`` over the declared defaults."""
    bound = bind(spec, variables)
    env = sandbox()
    out: list[str] = []
    for where, source in spec.templates():
        try:
            out.append(env.from_string(source).render(**bound))
        except jinja2.UndefinedError as exc:
            raise RenderError(f"prompt `{spec.name}`: {exc.message}", param=f"prompt.{where}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(
                f"prompt `{spec.name}` does not render: {exc}", param=f"prompt.{where}"
            ) from None
    if sum(len(s) for s in out) > MAX_RENDERED_CHARS:
        raise RenderError(
            f"the rendered prompt is over {MAX_RENDERED_CHARS} characters", param="prompt.variables"
        )
    if spec.messages is None:
        return out[0]
    return [{"role": m.role, "content": text} for m, text in zip(spec.messages, out, strict=True)]
