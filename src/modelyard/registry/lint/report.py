"""The lint report: one versioned JSON document; SARIF 2.1.0 and the terminal text render from it.

Document (``version`` 1)::

    {"version": 1, "tool": {"name": "modelyard-prompts-lint", "version": "0.1.0"},
     "strict": false, "exit_code": 1,
     "summary": {"files": 2, "invalid_files": 0, "errors": 1, "warnings": 1, "suppressed": 0},
     "files": [{"path": "p.yaml", "invalid": false, "findings": [Finding.to_dict(), ...]}]}

Exit codes: 0 no unsuppressed errors (warnings allowed unless ``strict``); 1 an error, or with
``strict`` a warning; 2 a file that is not a prompt at all (PL000: unreadable, not YAML, not a
valid prompt) -- bad input wins over findings, as for ``modelyard eval``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape

from modelyard.registry.lint.core import FileResult
from modelyard.registry.lint.rules import RULES, Severity

REPORT_VERSION = 1
TOOL_NAME = "modelyard-prompts-lint"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning"}


def _tool_version() -> str:
    try:
        return package_version("modelyard")
    except PackageNotFoundError:
        return "0.0.0"


def exit_code(results: list[FileResult], *, strict: bool = False) -> int:
    """2 when a file is not a prompt, else 1 on an unsuppressed error (or warning when ``strict``), else 0."""
    if any(r.invalid for r in results):
        return 2
    failing = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    live = (f for r in results for f in r.findings if not f.suppressed)
    return 1 if any(f.severity in failing for f in live) else 0


def build_document(results: list[FileResult], *, strict: bool = False) -> dict[str, Any]:
    """The versioned JSON report (see the module docstring)."""
    live = [f for r in results for f in r.findings if not f.suppressed]
    return {
        "version": REPORT_VERSION,
        "tool": {"name": TOOL_NAME, "version": _tool_version()},
        "strict": strict,
        "exit_code": exit_code(results, strict=strict),
        "summary": {
            "files": len(results),
            "invalid_files": sum(r.invalid for r in results),
            "errors": sum(f.severity == Severity.ERROR for f in live),
            "warnings": sum(f.severity == Severity.WARNING for f in live),
            "suppressed": sum(f.suppressed for r in results for f in r.findings),
        },
        "files": [
            {"path": r.path, "invalid": r.invalid, "findings": [f.to_dict() for f in r.findings]}
            for r in results
        ],
    }


def _uri(path: str) -> str:
    if "://" in path:  # registry://name:3
        return path
    p = Path(path)
    return p.as_uri() if p.is_absolute() else quote(p.as_posix())


def to_sarif(document: dict[str, Any]) -> dict[str, Any]:
    """A SARIF 2.1.0 log of ``document``: every rule in ``tool.driver.rules`` (help = its fix), one
    result per finding; suppressed findings carry an ``inSource`` suppression, as SARIF viewers expect.
    """
    ids = list(RULES)
    rules = [
        {
            "id": r.id,
            "name": r.name,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.summary},
            "help": {"text": r.fix, "markdown": f"**Fix:** {r.fix}"},
            "defaultConfiguration": {"level": _LEVEL[r.severity]},
            "properties": {"tags": ["prompt-lint"]},
        }
        for r in RULES.values()
    ]
    results = []
    for file in document["files"]:
        for f in file["findings"]:
            result: dict[str, Any] = {
                "ruleId": f["rule"],
                "ruleIndex": ids.index(f["rule"]),
                "level": f["severity"],
                "message": {"text": f"{f['message'].rstrip('.')}. Fix: {f['fix']}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(f["path"])},
                            "region": {"startLine": f["line"], "startColumn": f["column"]},
                        },
                        **({"logicalLocations": [{"fullyQualifiedName": f["where"]}]} if f["where"] else {}),
                    }
                ],
            }
            if f["suppressed"]:
                result["suppressions"] = [{"kind": "inSource"}]
            results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": document["tool"]["version"],
                        "semanticVersion": document["tool"]["version"],
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def print_text(document: dict[str, Any], console: Console) -> None:
    """One line per unsuppressed finding (``path:line:col ID severity message — fix``), then a summary."""
    colour = {"error": "red", "warning": "yellow"}
    for file in document["files"]:
        for f in file["findings"]:
            if f["suppressed"]:
                continue
            console.print(
                f"{escape(f['path'])}:{f['line']}:{f['column']} [bold]{f['rule']}[/bold] "
                f"[{colour[f['severity']]}]{f['severity']}[/] {escape(f['message'])} — {escape(f['fix'])}",
                highlight=False,
                soft_wrap=True,
            )
    s = document["summary"]
    tail = f", {s['suppressed']} suppressed" if s["suppressed"] else ""
    invalid = f", {s['invalid_files']} not a prompt" if s["invalid_files"] else ""
    console.print(
        f"{s['errors']} error(s), {s['warnings']} warning(s){tail} in {s['files']} file(s){invalid}",
        highlight=False,
    )
