"""The experiment report: per-variant metrics from exposures joined to the request log and feedback,
the statistics of each treatment against the control, and a decision with its reason.

The unit of analysis is the assignment unit: each unit's value of a metric is the mean over its
requests (so a heavy user does not count as many independent samples). Metrics: ``latency_ms``,
``ttft_ms`` (streams), ``itl_ms`` (streams of two tokens or more: the mean inter-token latency,
(latency - TTFT) / (output tokens - 1), vLLM's TPOT), ``output_tokens``, ``cost`` (registry prices), ``error_rate`` (status other
than 200, disconnects aside), ``refusal_rate`` (a refusal phrase or ``content_filter``) and
``feedback`` (``POST /v1/feedback``, scaled to [0, 1]); higher is better only for ``feedback``.

For every metric and treatment: Welch's t (fixed horizon, Holm-corrected across the metrics), the
always-valid confidence sequence, and for rates the two-proportion z over requests, for latency
Mann-Whitney and the bootstrap p95 difference over requests. Decisions read the confidence sequences,
which stay valid however often the report is looked at:

- ``keep_running`` with "no data" / "not enough data" until every variant has ``min_units`` units
  and the primary metric has values in each: no data is never success;
- ``keep_running`` and ``trustworthy: false`` when the SRM test fails (p < 0.001);
- ``stop`` when a guardrail metric of a treatment is worse (its interval excludes zero the bad way);
- ``ship`` when a treatment's primary metric interval excludes zero the good way and none of its
  guardrails is worse;
- otherwise ``keep_running``.

The report is a JSON document (``version`` 1); :mod:`modelyard.experiments.report_html` renders it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from modelyard.experiments import stats
from modelyard.experiments.records import Experiment
from modelyard.experiments.store import ExperimentStore, Exposure
from modelyard.monitoring.requestlog.records import RequestLogRow
from modelyard.registry.records import Prices

REPORT_VERSION = 1
HIGHER_IS_BETTER = {"feedback"}
RATES = {"error_rate", "refusal_rate"}
TIMELINE_POINTS = 20
_REFUSAL = re.compile(r"\b(I can(no|')t help|I('m| am) (sorry|unable)|I cannot|I won't|As an AI)\b", re.I)

Row = dict[str, Any]  # one request: variant, unit, created_at and its metric values


def is_refusal(text: str | None, finish_reason: str | None) -> bool:
    return finish_reason == "content_filter" or bool(text and _REFUSAL.search(text[:400]))


def request_rows(
    engine: Engine, store: ExperimentStore, exposures: list[Exposure], prices: Mapping[str, Prices]
) -> list[Row]:
    """One row per exposure, joined to its request-log row and its feedback (missing values absent)."""
    ids = [e.request_id for e in exposures]
    logged: dict[str, RequestLogRow] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            q = select(RequestLogRow).where(RequestLogRow.request_id.in_(ids[start : start + 500]))
            for r in conn.execute(q):
                logged[r.request_id] = r  # type: ignore[assignment]
    feedback = store.feedback(ids)
    rows: list[Row] = []
    for e in exposures:
        row: Row = {"variant": e.variant, "unit": e.unit, "created_at": e.created_at}
        log = logged.get(e.request_id)
        if log is not None:
            row["latency_ms"] = log.latency_ms
            if log.ttft_ms is not None and log.stream:
                row["ttft_ms"] = log.ttft_ms
                tokens = log.completion_tokens or 0
                if tokens > 1 and log.latency_ms is not None:
                    row["itl_ms"] = (log.latency_ms - log.ttft_ms) / (tokens - 1)
            if log.completion_tokens is not None:
                row["output_tokens"] = float(log.completion_tokens)
            price = prices.get(log.model)
            if price is not None:
                row["cost"] = price.cost(log.prompt_tokens or 0, log.completion_tokens or 0)
            if log.error != "disconnect":
                row["error_rate"] = 0.0 if log.status == 200 else 1.0
            if log.status == 200:
                row["refusal_rate"] = 1.0 if is_refusal(log.response, log.finish_reason) else 0.0
        if e.request_id in feedback:
            row["feedback"] = feedback[e.request_id]
        rows.append(row)
    return rows


def _per_unit(rows: list[Row], variant: str, metric: str) -> list[float]:
    by_unit: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["variant"] == variant and metric in r:
            by_unit[r["unit"]].append(r[metric])
    return [sum(v) / len(v) for v in by_unit.values()]


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _worse(metric: str, c: stats.Comparison) -> bool:
    return c.ci_high < 0 if metric in HIGHER_IS_BETTER else c.ci_low > 0


def _better(metric: str, c: stats.Comparison) -> bool:
    return c.ci_low > 0 if metric in HIGHER_IS_BETTER else c.ci_high < 0


def _compare(rows: list[Row], control: str, variant: str, metric: str, alpha: float) -> dict[str, Any] | None:
    a, b = _per_unit(rows, control, metric), _per_unit(rows, variant, metric)
    if len(a) < 2 or len(b) < 2:
        return None
    out: dict[str, Any] = {
        "welch": stats.welch(a, b, alpha).as_dict(),
        "sequential": stats.confidence_sequence(a, b, alpha).as_dict(),
    }
    req_a = [r[metric] for r in rows if r["variant"] == control and metric in r]
    req_b = [r[metric] for r in rows if r["variant"] == variant and metric in r]
    if metric in RATES:
        out["two_proportion"] = stats.two_proportions(
            int(sum(req_a)), len(req_a), int(sum(req_b)), len(req_b), alpha
        ).as_dict()
    if metric in ("latency_ms", "ttft_ms", "itl_ms"):
        out["mann_whitney"] = stats.mann_whitney(req_a, req_b).as_dict()
        out["bootstrap_p95"] = stats.bootstrap_p95(req_a, req_b, alpha, n_resamples=1000).as_dict()
    return out


def _timeline(rows: list[Row], exp: Experiment, metric: str, alpha: float) -> list[dict[str, Any]]:
    """Per variant: the cumulative per-unit mean of ``metric`` at up to 20 times, with the half-width
    of its always-valid interval (a confidence sequence on one mean)."""
    dated = sorted((r for r in rows if metric in r), key=lambda r: r["created_at"])
    if not dated:
        return []
    step = max(1, len(dated) // TIMELINE_POINTS)
    points = []
    for end in [*range(step, len(dated), step), len(dated)]:
        upto = dated[:end]
        point: dict[str, Any] = {"at": upto[-1]["created_at"].isoformat(), "variants": {}}
        for v in exp.variants:
            xs = _per_unit(upto, v.name, metric)
            if len(xs) >= 2:
                mean = sum(xs) / len(xs)
                var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
                half = stats.sequential_halfwidth(var / len(xs), len(xs), alpha)
                point["variants"][v.name] = {"mean": mean, "low": mean - half, "high": mean + half}
        points.append(point)
    return points


def build_report(
    exp: Experiment,
    rows: list[Row],
    *,
    alpha: float = 0.05,
    min_units: int = 100,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report document of ``exp`` from its joined request rows."""
    names = [v.name for v in exp.variants]
    metrics = [exp.primary_metric, *exp.guardrails]
    units = {n: len({r["unit"] for r in rows if r["variant"] == n}) for n in names}
    variants: dict[str, Any] = {}
    for v in exp.variants:
        summary: dict[str, Any] = {"weight": v.weight, "units": units[v.name], "requests": 0, "metrics": {}}
        summary["requests"] = sum(1 for r in rows if r["variant"] == v.name)
        for m in metrics:
            xs = _per_unit(rows, v.name, m)
            summary["metrics"][m] = {"n": len(xs), "mean": sum(xs) / len(xs) if xs else None}
        variants[v.name] = summary
    srm_p = stats.srm([units[n] for n in names], [v.weight for v in exp.variants])
    comparisons: dict[str, Any] = {}
    for name in names[1:]:
        per = {m: _compare(rows, exp.control, name, m, alpha) for m in metrics}
        present = [m for m in metrics if per[m] is not None]
        adjusted = stats.holm([per[m]["welch"]["p_value"] or math.nan for m in present], alpha)  # type: ignore[index]
        for m, p in zip(present, adjusted, strict=True):
            per[m]["welch"]["p_holm"] = p  # type: ignore[index]
        comparisons[name] = per
    decision, reason, variant = _decide(exp, comparisons, units, srm_p, min_units, metrics)
    doc = {
        "version": REPORT_VERSION,
        "object": "experiment.report",
        "experiment": exp.as_dict(),
        "generated_at": now.isoformat() if now else None,
        "alpha": alpha,
        "min_units": min_units,
        "control": exp.control,
        "primary_metric": exp.primary_metric,
        "guardrails": list(exp.guardrails),
        "srm": {"p_value": srm_p, "threshold": stats.SRM_THRESHOLD, "passed": srm_p >= stats.SRM_THRESHOLD},
        "trustworthy": srm_p >= stats.SRM_THRESHOLD,
        "variants": variants,
        "comparisons": comparisons,
        "timeline": _timeline(rows, exp, exp.primary_metric, alpha),
        "decision": {"action": decision, "reason": reason, "variant": variant},
    }
    return _clean(doc)  # type: ignore[no-any-return]


def _decide(
    exp: Experiment,
    comparisons: dict[str, Any],
    units: dict[str, int],
    srm_p: float,
    min_units: int,
    metrics: list[str],
) -> tuple[str, str, str | None]:
    if not any(units.values()):
        return "keep_running", "no data: nothing has been exposed yet", None
    short = [n for n, u in units.items() if u < min_units]
    if short:
        return (
            "keep_running",
            f"not enough data: {', '.join(f'{n} has {units[n]} units' for n in short)} (needs {min_units})",
            None,
        )
    if srm_p < stats.SRM_THRESHOLD:
        return (
            "keep_running",
            f"untrustworthy: sample-ratio mismatch (chi-square p = {srm_p:.2g} < 0.001)",
            None,
        )
    primary = exp.primary_metric
    for name, per in comparisons.items():
        for m in metrics[1:]:
            c = per.get(m)
            if c is not None and _worse(m, stats.Comparison(**_fields(c["sequential"]))):
                return "stop", f"guardrail `{m}` is worse for `{name}` than for `{exp.control}`", name
    winners = []
    for name, per in comparisons.items():
        c = per.get(primary)
        if c is None:
            return "keep_running", f"no data: the primary metric `{primary}` has no values for `{name}`", None
        seq = stats.Comparison(**_fields(c["sequential"]))
        if _better(primary, seq):
            winners.append((abs(seq.lift), name, seq))
    if winners:
        _, name, seq = max(winners)
        return (
            "ship",
            f"`{primary}` of `{name}` differs from `{exp.control}` by {seq.lift:+.4g} "
            f"(always-valid interval {seq.ci_low:+.4g} to {seq.ci_high:+.4g}); SRM passed; no guardrail worse",
            name,
        )
    return "keep_running", f"the primary metric `{primary}` interval still includes zero", None


def _fields(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None else v) for k, v in d.items() if k != "p_holm"}


def experiment_report(
    engine: Engine,
    store: ExperimentStore,
    eid: str,
    *,
    tenant: str | None = "*",
    prices: Mapping[str, Prices] | None = None,
    alpha: float = 0.05,
    min_units: int = 100,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report of experiment ``eid`` as ``tenant`` sees it (blocking: call through a thread)."""
    exp = store.get(eid, tenant)
    rows = request_rows(engine, store, store.exposures(eid), prices or {})
    return build_report(exp, rows, alpha=alpha, min_units=min_units, now=now)
