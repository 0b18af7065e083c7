"""Prompt lint: rules with stable ids over prompt files and registry versions (``modelyard prompts lint``).

:func:`lint_spec` is the core (one :class:`~modelyard.registry.prompt_spec.PromptSpec`, its YAML
source and an origin name -> findings); :func:`lint_file` wraps it for files; :mod:`.report` renders
the versioned JSON document, SARIF 2.1.0 and text. Rules: :data:`RULES`, documented in
``docs/prompts-lint.md``.
"""

from modelyard.registry.lint.context import ModelCatalog
from modelyard.registry.lint.core import FileResult, lint_file, lint_spec, spec_source
from modelyard.registry.lint.rules import RULES, Finding, Rule, Severity

__all__ = [
    "RULES",
    "FileResult",
    "Finding",
    "ModelCatalog",
    "Rule",
    "Severity",
    "lint_file",
    "lint_spec",
    "spec_source",
]
