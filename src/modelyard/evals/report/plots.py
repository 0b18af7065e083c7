"""Plots of a run or compare document as inline SVG, drawn with matplotlib when it is installed.

matplotlib is the optional ``reports`` extra (``pip install 'modelyard[reports]'``); without it every
function here returns ``None`` and the HTML report shows tables only. Figures are built with the
object API (``matplotlib.figure.Figure``, no pyplot state), text stays text (``svg.fonttype: none``),
and element ids are prefixed per figure so several SVGs can live in one page.
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Mapping
from typing import Any

from modelyard.evals.report.common import item_views, scorer_names, target_names

INSTALL_HINT = "pip install 'modelyard[reports]'"
_DROP = (
    re.compile(r"<\?xml[^>]*\?>\s*"),
    re.compile(r"<!DOCTYPE[^>]*>\s*", re.DOTALL),
    re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL),
)


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _svg(fig: Any, prefix: str) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buffer.getvalue()
    for pattern in _DROP:
        svg = pattern.sub("", svg)
    svg = re.sub(r'\bid="', f'id="{prefix}-', svg)
    svg = svg.replace('href="#', f'href="#{prefix}-').replace("url(#", f"url(#{prefix}-")
    return svg.strip()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _context() -> Any:
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "modelyard", "font.size": 9})


def pass_rate_plot(doc: Mapping[str, Any]) -> str | None:
    """Grouped bars: the pass rate of every target, overall and per scorer."""
    if not plots_available():
        return None
    import numpy as np

    summary: Mapping[str, Any] = doc.get("summary") or {}
    targets, scorers = target_names(doc), scorer_names(doc)
    groups = ["overall", *scorers]
    with _context():
        fig = _figure(max(4.0, 1.1 * len(groups) + 2), 3.0)
        ax = fig.subplots()
        width = 0.8 / max(len(targets), 1)
        x = np.arange(len(groups))
        for i, name in enumerate(targets):
            s = summary.get(name) or {}
            values = [s.get("pass_rate") or 0.0]
            values += [((s.get("per_scorer") or {}).get(g) or {}).get("pass_rate") or 0.0 for g in scorers]
            ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
        ax.set_xticks(x, groups, rotation=20, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("pass rate")
        ax.set_title("Pass rate per target and scorer")
        ax.legend(fontsize=8)
        return _svg(fig, "pass")


def score_distribution_plot(doc: Mapping[str, Any]) -> str | None:
    """Histogram of item scores (repeats averaged) per target, on [0, 1]."""
    if not plots_available():
        return None
    views = item_views(doc)
    with _context():
        fig = _figure(5.5, 3.0)
        ax = fig.subplots()
        for name in target_names(doc):
            scores = [v.score for v in views if v.target == name]
            if scores:
                ax.hist(scores, bins=10, range=(0, 1), histtype="step", linewidth=1.5, label=name)
        ax.set_xlabel("item score")
        ax.set_ylabel("items")
        ax.set_title("Score distribution")
        ax.legend(fontsize=8)
        return _svg(fig, "score")


def latency_distribution_plot(doc: Mapping[str, Any]) -> str | None:
    """Box plot of result latencies (errors left out) per target."""
    if not plots_available():
        return None
    targets = target_names(doc)
    data = [
        [
            float(r["latency_s"])
            for r in doc.get("results") or []
            if r.get("target") == name and not r.get("error")
        ]
        for name in targets
    ]
    with _context():
        fig = _figure(max(4.0, 1.2 * len(targets) + 2), 3.0)
        ax = fig.subplots()
        ax.boxplot([d or [0.0] for d in data], tick_labels=targets, showfliers=True)
        ax.set_ylabel("latency (s)")
        ax.set_title("Latency distribution")
        return _svg(fig, "latency")


def compare_plot(doc: Mapping[str, Any]) -> str | None:
    """Mean score difference (b - a) per target pair with its bootstrap interval."""
    comparisons = [c for c in doc.get("comparisons") or [] if c.get("score_diff") is not None]
    if not plots_available() or not comparisons:
        return None
    with _context():
        fig = _figure(5.5, 0.6 * len(comparisons) + 1.5)
        ax = fig.subplots()
        for i, c in enumerate(comparisons):
            low, high = c["ci_low"], c["ci_high"]
            colour = {"regression": "tab:red", "improvement": "tab:green"}.get(c["verdict"], "tab:gray")
            ax.errorbar(
                [c["score_diff"]],
                [i],
                xerr=[[c["score_diff"] - low], [high - c["score_diff"]]],
                fmt="o",
                color=colour,
                capsize=4,
            )
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(comparisons)), [f"{c['target_a']} -> {c['target_b']}" for c in comparisons])
        ax.set_xlabel("mean score difference b - a")
        ax.set_title(f"Score difference, {100 * (1 - float(doc.get('alpha', 0.05))):.0f}% bootstrap CI")
        return _svg(fig, "compare")
