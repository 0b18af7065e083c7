"""Renderings of a run document (and of a compare document): all read the JSON document only (STYLE 16).

``render_run(doc, fmt)`` with ``fmt`` in :data:`RUN_FORMATS` (``table``, ``json``, ``junit``,
``html``) and ``render_compare(doc, fmt)`` with ``fmt`` in :data:`COMPARE_FORMATS` (``table``,
``json``, ``html``) return the text to print or write; ``write_junit`` / ``write_html`` /
``write_report`` write a run's rendering to a file (what ``eval run --junit/--html`` calls).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.evals.report.html import render_compare_html, render_run_html
from modelyard.evals.report.junit import render_junit
from modelyard.evals.report.table import render_compare_table, render_run_table

RUN_FORMATS = ("table", "json", "junit", "html")
COMPARE_FORMATS = ("table", "json", "html")


def render_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def render_run(doc: Mapping[str, Any], fmt: str) -> str:
    if fmt == "table":
        return render_run_table(doc)
    if fmt == "json":
        return render_json(doc)
    if fmt == "junit":
        return render_junit(doc)
    if fmt == "html":
        return render_run_html(doc)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(RUN_FORMATS)}")


def render_compare(doc: Mapping[str, Any], fmt: str) -> str:
    if fmt == "table":
        return render_compare_table(doc)
    if fmt == "json":
        return render_json(doc)
    if fmt == "html":
        return render_compare_html(doc)
    raise ValueError(f"unknown compare format {fmt!r}; use one of {', '.join(COMPARE_FORMATS)}")


def write_report(doc: Mapping[str, Any], fmt: str, path: Path) -> None:
    """Render the run document as ``fmt`` into ``path`` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_run(doc, fmt), encoding="utf-8")


def write_junit(doc: Mapping[str, Any], path: Path) -> None:
    write_report(doc, "junit", path)


def write_html(doc: Mapping[str, Any], path: Path) -> None:
    write_report(doc, "html", path)


__all__ = [
    "COMPARE_FORMATS",
    "RUN_FORMATS",
    "render_compare",
    "render_compare_html",
    "render_json",
    "render_junit",
    "render_run",
    "render_run_html",
    "render_run_table",
    "write_html",
    "write_junit",
    "write_report",
]
