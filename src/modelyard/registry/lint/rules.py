"""The prompt-lint rules: stable ids, one severity each, a one-line fix; and the finding they produce.

Ids never change meaning and are never reused: CI configurations, suppression comments and SARIF
viewers refer to them. ``docs/prompts-lint.md`` carries the table :func:`rules_markdown` renders
(a test keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(slots=True, frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity
    summary: str
    fix: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "PL000",
            "invalid-prompt",
            Severity.ERROR,
            "The file is not a prompt: unreadable, not YAML, or not a valid prompt document.",
            "Fix the field the message names; a prompt is a mapping with `name` and `messages` or `text`.",
        ),
        Rule(
            "PL001",
            "template-syntax",
            Severity.ERROR,
            "A template does not compile (Jinja2 syntax error).",
            "Close or correct the Jinja2 tag at the reported line.",
        ),
        Rule(
            "PL002",
            "undeclared-variable",
            Severity.ERROR,
            "A template reads a variable the prompt does not declare (rendering fails on it).",
            "Declare it under `variables` (with a `default` if it is optional), or remove it from the template.",
        ),
        Rule(
            "PL003",
            "unused-variable",
            Severity.WARNING,
            "A declared variable is never used by any template.",
            "Remove the declaration, or use the variable in a template.",
        ),
        Rule(
            "PL004",
            "context-overflow",
            Severity.ERROR,
            "The rendered prompt plus `max_tokens` does not fit the target model's context window.",
            "Shorten the prompt or lower `max_tokens` so that prompt + max_tokens fits the window.",
        ),
        Rule(
            "PL005",
            "context-unchecked",
            Severity.WARNING,
            "The context window could not be checked (no target model, unknown model or tokenizer, "
            "or no values to render with).",
            "Set `model` (or pass --model) to a local model and give `sample_variables` for required variables.",
        ),
        Rule(
            "PL006",
            "missing-max-tokens",
            Severity.WARNING,
            "The prompt sets no `max_tokens`: completions run to the model's or server's default length.",
            "Add `max_tokens` under `parameters`.",
        ),
        Rule(
            "PL007",
            "system-interpolation",
            Severity.WARNING,
            "A variable is interpolated into a system or developer message (prompt-injection risk).",
            "Move caller-supplied values into a user message; keep system messages fixed text.",
        ),
        Rule(
            "PL008",
            "secret",
            Severity.ERROR,
            "Template text or a default holds something shaped like a secret (API key, token, private key).",
            "Remove the secret, rotate it, and pass credentials outside prompts.",
        ),
        Rule(
            "PL009",
            "bidi-control",
            Severity.ERROR,
            "Text holds bidirectional control characters, which make it read differently than it runs.",
            "Delete the bidi override/isolate/mark characters (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C).",
        ),
        Rule(
            "PL010",
            "invisible-character",
            Severity.WARNING,
            "Text holds invisible characters (zero-width, tag or other format characters) that can hide "
            "instructions.",
            "Delete the invisible characters, or write them as visible text if they are intended.",
        ),
        Rule(
            "PL011",
            "render-error",
            Severity.ERROR,
            "The prompt does not render with its sample variables and defaults.",
            "Fix the template or `sample_variables` so the prompt renders (types, names, filters).",
        ),
    )
}


@dataclass(slots=True, frozen=True)
class Finding:
    """One rule violation at a 1-based ``line``/``column`` of ``origin`` (``where``: the field path)."""

    rule: str
    message: str
    origin: str
    line: int
    column: int
    where: str
    suppressed: bool = False

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity

    @property
    def fix(self) -> str:
        return RULES[self.rule].fix

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "name": RULES[self.rule].name,
            "severity": str(self.severity),
            "message": self.message,
            "fix": self.fix,
            "path": self.origin,
            "line": self.line,
            "column": self.column,
            "where": self.where,
            "suppressed": self.suppressed,
        }


def rules_markdown() -> str:
    """The rule table of ``docs/prompts-lint.md`` (between its ``rules:begin``/``rules:end`` markers)."""
    rows = ["| id | name | severity | what it finds | fix |", "|---|---|---|---|---|"]
    for r in RULES.values():
        rows.append(f"| {r.id} | `{r.name}` | {r.severity} | {r.summary} | {r.fix} |")
    return "\n".join(rows) + "\n"
