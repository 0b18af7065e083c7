"""Terminal tables (rich) of a run document and of a compare document."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from modelyard.evals.report.common import (
    fmt_cost,
    fmt_num,
    fmt_rate,
    fmt_seconds,
    gate_reasons,
    item_views,
    scorer_names,
    status_line,
    target_names,
    title,
)

MAX_FAILURES = 20


def run_renderable(doc: Mapping[str, Any], *, max_failures: int = MAX_FAILURES) -> RenderableType:
    """Header, per-target summary, per-scorer pass rates, gate and the first failing items."""
    summary: Mapping[str, Any] = doc.get("summary") or {}
    targets = target_names(doc)
    parts: list[RenderableType] = [
        Text(f"{title(doc)}  run {doc.get('run_id', '?')}  {doc.get('created_at', '')}", style="bold"),
        Text(status_line(doc), style="green" if doc.get("status") == "passed" else "red"),
    ]
    overview = Table(title="Targets", title_justify="left")
    for column in (
        "target",
        "items",
        "pass rate",
        "mean score",
        "errors",
        "p50",
        "p95",
        "tokens in/out",
        "cost",
    ):
        overview.add_column(column, justify="left" if column == "target" else "right")
    for name in targets:
        s = summary.get(name) or {}
        overview.add_row(
            name,
            str(s.get("items", 0)),
            fmt_rate(s.get("pass_rate")),
            fmt_num(s.get("mean_score")),
            str(s.get("errors", 0)),
            fmt_seconds(s.get("latency_p50_s")),
            fmt_seconds(s.get("latency_p95_s")),
            f"{s.get('prompt_tokens', 0)}/{s.get('completion_tokens', 0)}",
            fmt_cost(s.get("cost_usd")),
        )
    parts.append(overview)
    per_scorer = Table(title="Pass rate (mean score) per scorer", title_justify="left")
    per_scorer.add_column("scorer")
    for name in targets:
        per_scorer.add_column(name, justify="right")
    for scorer in scorer_names(doc):
        cells = []
        for name in targets:
            entry = ((summary.get(name) or {}).get("per_scorer") or {}).get(scorer) or {}
            cells.append(f"{fmt_rate(entry.get('pass_rate'))} ({fmt_num(entry.get('mean'), 2)})")
        per_scorer.add_row(scorer, *cells)
    parts.append(per_scorer)
    reasons = gate_reasons(doc)
    if reasons:
        parts.append(Text("Gate:\n" + "\n".join(f"  - {r}" for r in reasons), style="red"))
    failing = [v for v in item_views(doc) if not v.passed]
    if failing:
        failures = Table(title=f"Failing items ({len(failing)})", title_justify="left")
        for column in ("target", "item", "why"):
            failures.add_column(column, overflow="fold")
        for view in failing[:max_failures]:
            failures.add_row(view.target, view.item_id, "\n".join(view.problems()[:4]))
        parts.append(failures)
        if len(failing) > max_failures:
            parts.append(Text(f"... and {len(failing) - max_failures} more (see the JSON or HTML report)"))
    return Group(*parts)


def compare_renderable(doc: Mapping[str, Any]) -> RenderableType:
    """One row per target pair: pass rates, McNemar counts and p-value, score difference with its CI, verdict."""
    a, b = doc.get("a") or {}, doc.get("b") or {}
    table = Table(title=f"a = {a.get('run_id')} (baseline), b = {b.get('run_id')}", title_justify="left")
    for column in ("a -> b", "items", "pass a", "pass b", "pass->fail", "fail->pass", "McNemar p"):
        table.add_column(column, justify="left" if column == "a -> b" else "right")
    table.add_column("score diff [CI]", justify="right")
    table.add_column("verdict")
    for c in doc.get("comparisons") or []:
        verdict = str(c["verdict"])
        style = {"regression": "red", "improvement": "green"}.get(verdict, "")
        table.add_row(
            f"{c['target_a']} -> {c['target_b']}",
            str(c["items"]),
            fmt_rate(c["pass_rate_a"]),
            fmt_rate(c["pass_rate_b"]),
            str(c["pass_to_fail"]),
            str(c["fail_to_pass"]),
            f"{c['mcnemar_p']:.4f}",
            f"{fmt_num(c['score_diff'])} [{fmt_num(c['ci_low'])}, {fmt_num(c['ci_high'])}]",
            Text(verdict, style=style),
        )
    footer = (
        f"alpha {doc.get('alpha')}; verdict by McNemar's exact test; CI: paired bootstrap percentile, "
        f"{doc.get('resamples')} resamples, seed {doc.get('seed')}"
    )
    parts: list[RenderableType] = [
        table,
        Text(footer, style="dim"),
        Text(f"verdict: {doc.get('verdict')}", style="bold"),
    ]
    parts.extend(Text(f"warning: {w}", style="yellow") for w in doc.get("warnings") or [])
    return Group(*parts)


def to_text(renderable: RenderableType, width: int = 120) -> str:
    """Plain text (no colour codes) of a renderable, for files and tests."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False).print(
        renderable
    )
    return buffer.getvalue()


def render_run_table(doc: Mapping[str, Any], width: int = 120) -> str:
    return to_text(run_renderable(doc), width)


def render_compare_table(doc: Mapping[str, Any], width: int = 120) -> str:
    return to_text(compare_renderable(doc), width)
