"""What every rendering of a run document shares: number formats and the per-item view of the results.

Renderers read only the document (STYLE 16): an item's verdict is the summary's (at least half its
repeats passed, :mod:`modelyard.evals.summary`), and its failure text lists each failing repeat's
failing scorers with their reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.evals.summary import PASS_FRACTION, result_verdict


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def fmt_num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def fmt_cost(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


@dataclass(slots=True)
class ItemView:
    """One item for one target: its repeats (in order), verdict and what went wrong."""

    item_id: str
    target: str
    results: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        ok = sum(1 for r in self.results if result_verdict(r)[1])
        return ok / len(self.results) >= PASS_FRACTION

    @property
    def errored(self) -> bool:
        """Failed because of errors: no repeat produced a passing answer and at least one errored."""
        return not self.passed and any(r.get("error") for r in self.results)

    @property
    def score(self) -> float:
        return sum(0.0 if r.get("error") else float(r.get("score") or 0.0) for r in self.results) / len(
            self.results
        )

    @property
    def latency_s(self) -> float:
        return sum(float(r.get("latency_s") or 0.0) for r in self.results)

    def problems(self) -> list[str]:
        """One line per failing scorer verdict or error, prefixed by the repeat when there are several."""
        lines: list[str] = []
        for r in self.results:
            prefix = f"repeat {r.get('repeat', 0)}: " if len(self.results) > 1 else ""
            if r.get("error"):
                lines.append(f"{prefix}error: {r['error']}")
                continue
            for name, verdict in (r.get("scores") or {}).items():
                if not verdict.get("passed"):
                    reason = verdict.get("reason") or "failed"
                    lines.append(f"{prefix}{name} (score {float(verdict.get('score') or 0.0):.3f}): {reason}")
        return lines

    def headline(self) -> str:
        """A one-line message: the failing scorers, and the share of repeats that passed."""
        names: dict[str, None] = {}
        for r in self.results:
            if r.get("error"):
                names.setdefault("error", None)
            for name, verdict in (r.get("scores") or {}).items():
                if not verdict.get("passed"):
                    names.setdefault(name, None)
        ok = sum(1 for r in self.results if result_verdict(r)[1])
        repeats = f" ({ok} of {len(self.results)} repeats passed)" if len(self.results) > 1 else ""
        return f"failed: {', '.join(names) or 'score'}{repeats}"


def item_views(doc: Mapping[str, Any]) -> list[ItemView]:
    """Items per target in the document's target order, then first-seen item order."""
    order = [str(t["name"]) for t in doc.get("targets") or []]
    views: dict[tuple[str, str], ItemView] = {}
    for r in doc.get("results") or []:
        key = (str(r.get("target")), str(r.get("item_id")))
        views.setdefault(key, ItemView(key[1], key[0])).results.append(r)
    for r_list in views.values():
        r_list.results.sort(key=lambda r: int(r.get("repeat") or 0))
    rank = {name: i for i, name in enumerate(order)}
    return sorted(views.values(), key=lambda v: rank.get(v.target, len(rank)))


def scorer_names(doc: Mapping[str, Any]) -> list[str]:
    names = [str(s["name"]) for s in doc.get("scorers") or []]
    for summary in (doc.get("summary") or {}).values():
        for name in summary.get("per_scorer") or {}:
            if name not in names:
                names.append(name)
    return names


def target_names(doc: Mapping[str, Any]) -> list[str]:
    return [str(t["name"]) for t in doc.get("targets") or []]


def title(doc: Mapping[str, Any]) -> str:
    suite = (doc.get("suite") or {}).get("name") or "eval"
    dataset: Mapping[str, Any] = doc.get("dataset") or {}
    return f"{suite} on {dataset.get('name', '?')}@{dataset.get('version', '?')}"


def status_line(doc: Mapping[str, Any]) -> str:
    gate = doc.get("gate")
    status = str(doc.get("status") or "unknown").upper()
    if gate is None:
        return f"status {status} (no gate)"
    return f"status {status}: gate {'passed' if gate.get('passed') else 'failed'}"


def gate_reasons(doc: Mapping[str, Any]) -> Sequence[str]:
    gate = doc.get("gate") or {}
    return list(gate.get("reasons") or [])
