"""Self-contained HTML reports of a run document and of a compare document.

One file, no external assets: inline CSS, plots as inline SVG (:mod:`modelyard.evals.report.plots`),
every value HTML-escaped. Without matplotlib the page has the tables and says how to get the plots.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from modelyard.evals.report import plots
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

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:72rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.passed{color:#17692a}.failed,.error,.regression{color:#a11}.improvement{color:#17692a}
pre{white-space:pre-wrap;margin:0;font-size:.85rem}.plots svg{max-width:100%;height:auto;margin:.5rem 1rem .5rem 0}
.note{color:#666}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] | None = None
) -> str:
    """Cells are already-escaped HTML."""
    flags = list(numeric or [False] * len(headers))
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if flags[i] else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(heading: str, sections: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(heading)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(heading)}</h1>" + "".join(sections) + "</body></html>\n"
    )


def _plots_section(svgs: Sequence[str | None], with_plots: bool) -> str:
    if not with_plots:
        return f'<p class="note">Plots need matplotlib: <code>{_e(plots.INSTALL_HINT)}</code>, then render again.</p>'
    drawn = [s for s in svgs if s]
    return '<h2>Plots</h2><div class="plots">' + "".join(drawn) + "</div>" if drawn else ""


def render_run_html(doc: Mapping[str, Any], *, with_plots: bool | None = None) -> str:
    """The run report; ``with_plots`` defaults to whether matplotlib is installed."""
    draw = plots.plots_available() if with_plots is None else with_plots
    summary: Mapping[str, Any] = doc.get("summary") or {}
    targets, scorers = target_names(doc), scorer_names(doc)
    status = str(doc.get("status") or "")
    sections = [
        f'<p class="{_e(status)}"><strong>{_e(status_line(doc))}</strong></p>',
        f"<p>run <code>{_e(doc.get('run_id'))}</code> · {_e(doc.get('created_at'))} · git "
        f"<code>{_e(doc.get('git_commit') or '-')}</code> · repeats {_e(doc.get('repeats'))} · seed {_e(doc.get('seed'))}</p>",
    ]
    reasons = gate_reasons(doc)
    if reasons:
        sections.append(
            "<h2>Gate</h2><ul>" + "".join(f'<li class="failed">{_e(r)}</li>' for r in reasons) + "</ul>"
        )
    rows = []
    for name in targets:
        s = summary.get(name) or {}
        rows.append(
            [
                _e(name),
                _e(s.get("items", 0)),
                _e(fmt_rate(s.get("pass_rate"))),
                _e(fmt_num(s.get("mean_score"))),
                _e(s.get("errors", 0)),
                _e(fmt_seconds(s.get("latency_p50_s"))),
                _e(fmt_seconds(s.get("latency_p95_s"))),
                _e(f"{s.get('prompt_tokens', 0)}/{s.get('completion_tokens', 0)}"),
                _e(fmt_cost(s.get("cost_usd"))),
            ]
        )
    headers = ["target", "items", "pass rate", "mean score", "errors", "p50", "p95", "tokens in/out", "cost"]
    sections.append("<h2>Targets</h2>" + _table(headers, rows, [False] + [True] * 8))
    scorer_rows = []
    for scorer in scorers:
        cells = [_e(scorer)]
        for name in targets:
            entry = ((summary.get(name) or {}).get("per_scorer") or {}).get(scorer) or {}
            cells.append(_e(f"{fmt_rate(entry.get('pass_rate'))} ({fmt_num(entry.get('mean'), 2)})"))
        scorer_rows.append(cells)
    sections.append(
        "<h2>Pass rate (mean score) per scorer</h2>"
        + _table(["scorer", *targets], scorer_rows, [False] + [True] * len(targets))
    )
    sections.append(
        _plots_section(
            [
                plots.pass_rate_plot(doc),
                plots.score_distribution_plot(doc),
                plots.latency_distribution_plot(doc),
            ]
            if draw
            else [],
            draw,
        )
    )
    failing = [v for v in item_views(doc) if not v.passed]
    if failing:
        fail_rows = []
        for v in failing:
            answer = next((r.get("output") for r in v.results if r.get("output") is not None), None)
            fail_rows.append(
                [
                    _e(v.target),
                    _e(v.item_id),
                    f"<pre>{_e(chr(10).join(v.problems()))}</pre>",
                    f"<pre>{_e(answer)}</pre>",
                ]
            )
        sections.append(
            f"<h2>Failing items ({len(failing)})</h2>"
            + _table(["target", "item", "why", "answer"], fail_rows)
        )
    target_rows = [
        [
            _e(t.get("name")),
            _e(t.get("kind")),
            _e(t.get("ref")),
            _e(t.get("resolved")),
            f"<code>{_e(t.get('digest'))}</code>",
        ]
        for t in doc.get("targets") or []
    ]
    sections.append(
        "<h2>Targets run</h2>" + _table(["name", "kind", "ref", "resolved", "digest"], target_rows)
    )
    scorer_spec_rows = [
        [_e(s.get("name")), _e(s.get("type")), _e(s.get("threshold")), _e(s.get("weight"))]
        for s in doc.get("scorers") or []
    ]
    sections.append("<h2>Scorers</h2>" + _table(["name", "type", "threshold", "weight"], scorer_spec_rows))
    suite, dataset = doc.get("suite") or {}, doc.get("dataset") or {}
    sections.append(
        f'<p class="note">suite digest <code>{_e(suite.get("digest"))}</code> · dataset digest '
        f"<code>{_e(dataset.get('digest'))}</code> · run document version {_e(doc.get('version'))}</p>"
    )
    return _page(f"Eval report: {title(doc)}", sections)


def render_compare_html(doc: Mapping[str, Any], *, with_plots: bool | None = None) -> str:
    """The compare report: the per-pair statistics table, the CI plot, regressed and improved items."""
    draw = plots.plots_available() if with_plots is None else with_plots
    a, b = doc.get("a") or {}, doc.get("b") or {}
    verdict = str(doc.get("verdict"))
    sections = [
        f'<p class="{_e(verdict.split()[0])}"><strong>verdict: {_e(verdict)}</strong></p>',
        f"<p>a (baseline) <code>{_e(a.get('run_id'))}</code> · b <code>{_e(b.get('run_id'))}</code></p>",
    ]
    rows = []
    for c in doc.get("comparisons") or []:
        rows.append(
            [
                _e(f"{c['target_a']} -> {c['target_b']}"),
                _e(c["items"]),
                _e(fmt_rate(c["pass_rate_a"])),
                _e(fmt_rate(c["pass_rate_b"])),
                _e(c["pass_to_fail"]),
                _e(c["fail_to_pass"]),
                _e(f"{c['mcnemar_p']:.4f}"),
                _e(f"{fmt_num(c['score_diff'])} [{fmt_num(c['ci_low'])}, {fmt_num(c['ci_high'])}]"),
                f'<span class="{_e(str(c["verdict"]).split()[0])}">{_e(c["verdict"])}</span>',
            ]
        )
    headers = [
        "a -> b",
        "items",
        "pass a",
        "pass b",
        "pass->fail",
        "fail->pass",
        "McNemar p",
        "score diff [CI]",
        "verdict",
    ]
    sections.append("<h2>Comparisons</h2>" + _table(headers, rows, [False] + [True] * 7 + [False]))
    sections.append(
        f'<p class="note">alpha {_e(doc.get("alpha"))}; the verdict is McNemar\'s exact test on pass/fail '
        f"(McNemar 1947); the interval is a paired bootstrap percentile CI (Efron &amp; Tibshirani 1993), "
        f"{_e(doc.get('resamples'))} resamples, seed {_e(doc.get('seed'))}.</p>"
    )
    sections.append(_plots_section([plots.compare_plot(doc)] if draw else [], draw))
    for c in doc.get("comparisons") or []:
        if c["regressed_items"] or c["improved_items"]:
            sections.append(
                f"<h2>{_e(c['target_a'])} -> {_e(c['target_b'])}</h2>"
                f"<p>pass -> fail: {_e(', '.join(c['regressed_items']) or '-')}</p>"
                f"<p>fail -> pass: {_e(', '.join(c['improved_items']) or '-')}</p>"
            )
    if doc.get("warnings"):
        sections.append(
            "<h2>Warnings</h2><ul>" + "".join(f"<li>{_e(w)}</li>" for w in doc["warnings"]) + "</ul>"
        )
    sections.append(
        f"<details><summary>compare document</summary><pre>{_e(json.dumps(doc, indent=2))}</pre></details>"
    )
    return _page("Eval compare", sections)
