"""A drift monitor: what it watches (scope), against what (baseline), when (current window), how
(methods and thresholds), and the evaluation of one run.

A spec is plain JSON (the admin API and ``modelyard drift create`` take it as is)::

    {"id": "support-en", "scope": {"model": "chat", "tenant": "acme", "prompt": "support:3",
     "template": "drain:7"}, "baseline": {"trailing": "7d"} | {"start": ISO, "end": ISO},
     "current": {"last": "1h"}, "methods": ["domain_classifier", "mmd", "centroid"],
     "thresholds": {"domain_classifier": 0.55, "mmd_p": 0.01, "centroid": null, "output_p": 0.01},
     "min_samples": 50, "alert_after": 2, "expected_languages": ["en"], "interval_s": 3600}

Every field but ``id`` has a default; a bad one is an :class:`InvalidRequest` naming it (``scope.foo``,
``baseline.start``). A trailing baseline ends where the current window starts.

:func:`evaluate` gives ``insufficient_data`` when either window has fewer than ``min_samples`` rows
(an empty window is never ``no_drift``); else ``drift`` when any configured method crosses its
threshold (``domain_classifier``: AUC above 0.55, Evidently's default, or above the random
classifier's 99.9% quantile where that is higher, see :func:`.methods.auc_null_quantile`; ``mmd``: permutation p-value
under ``mmd_p``; ``centroid``: distance above the explicit threshold, or, when null, above the one
learned from baseline chunks of the current window's size, NannyML's mean + 3σ; the output methods
``response_length`` and ``refusal_rate``: p-value under ``output_p``); else ``no_drift``. Output drift
(response length, refusal rate) is reported in ``output`` on every run and decides the status only
when chosen in ``methods``.
A run *alerts* when it and the ``alert_after - 1`` runs before it are all ``drift``, which keeps one
noisy window from paging anyone (the per-window false-positive rate multiplies).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np

from modelyard.errors import InvalidRequest
from modelyard.monitoring.drift import methods as stats
from modelyard.monitoring.drift.outliers import LengthFence, far_from_baseline

REPORT_VERSION = 1
METHODS = ("domain_classifier", "mmd", "centroid", "response_length", "refusal_rate")
OUTPUT_METHODS = ("response_length", "refusal_rate")
SCOPE_KEYS = ("model", "tenant", "prompt", "template")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LANG = re.compile(r"^[a-z]{2}$")


class Status(StrEnum):
    DRIFT = "drift"
    NO_DRIFT = "no_drift"
    INSUFFICIENT_DATA = "insufficient_data"


@dataclass(slots=True, frozen=True)
class Scope:
    model: str | None = None
    tenant: str | None = None
    prompt: str | None = None  # name:version, as the request log stores it
    template: str | None = None  # a template id (prompt:..., drain:...)


@dataclass(slots=True, frozen=True)
class Baseline:
    trailing_s: float | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(slots=True, frozen=True)
class MonitorSpec:
    id: str
    scope: Scope = field(default_factory=Scope)
    baseline: Baseline = field(default_factory=lambda: Baseline(trailing_s=7 * 86400.0))
    current_s: float = 3600.0
    methods: tuple[str, ...] = ("domain_classifier", "mmd")
    auc_threshold: float = stats.AUC_THRESHOLD
    mmd_p: float = 0.01
    centroid_threshold: float | None = None
    output_p: float = 0.01
    min_samples: int = 50
    alert_after: int = 2
    expected_languages: tuple[str, ...] = ()
    interval_s: float = 3600.0

    def windows(self, now: datetime) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
        """((baseline start, end), (current start, end)) for a run at ``now``."""
        cur = (now - timedelta(seconds=self.current_s), now)
        if self.baseline.trailing_s is not None:
            return (cur[0] - timedelta(seconds=self.baseline.trailing_s), cur[0]), cur
        assert self.baseline.start is not None and self.baseline.end is not None
        return (self.baseline.start, self.baseline.end), cur

    def as_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {
            "id": self.id,
            "scope": {k: v for k, v in asdict(self.scope).items() if v is not None},
            "baseline": {"trailing": _fmt(b.trailing_s)}
            if b.trailing_s is not None
            else {"start": b.start.isoformat() if b.start else None, "end": b.end.isoformat() if b.end else None},
            "current": {"last": _fmt(self.current_s)},
            "methods": list(self.methods),
            "thresholds": {
                "domain_classifier": self.auc_threshold, "mmd_p": self.mmd_p, "centroid": self.centroid_threshold,
                "output_p": self.output_p,
            },
            "min_samples": self.min_samples, "alert_after": self.alert_after,
            "expected_languages": list(self.expected_languages), "interval_s": self.interval_s,
        }  # fmt: skip


def parse_spec(spec: Any) -> MonitorSpec:
    """A :class:`MonitorSpec` from JSON, or an :class:`InvalidRequest` naming the bad field."""
    if not isinstance(spec, dict):
        raise InvalidRequest("a monitor is a JSON object")
    _only(spec, {"id", "scope", "baseline", "current", "methods", "thresholds", "min_samples",
                 "alert_after", "expected_languages", "interval_s", "tenant"}, "")  # fmt: skip
    mid = spec.get("id")
    if not isinstance(mid, str) or not _ID.match(mid):
        raise InvalidRequest("`id` is 1-64 letters, digits, `.`, `_` or `-`", param="id")
    scope = spec.get("scope") or {}
    if not isinstance(scope, dict):
        raise InvalidRequest("`scope` is an object with model, tenant, prompt, template", param="scope")
    _only(scope, set(SCOPE_KEYS), "scope.")
    for k, v in scope.items():
        if not isinstance(v, str) or not 0 < len(v) <= 256:
            raise InvalidRequest(f"`scope.{k}` is a non-empty string", param=f"scope.{k}")
    if "prompt" in scope and ":" not in scope["prompt"]:
        raise InvalidRequest("`scope.prompt` is `name:version`", param="scope.prompt")
    current = spec.get("current", {"last": "1h"})
    if not isinstance(current, dict):
        raise InvalidRequest('`current` is an object like {"last": "1h"}', param="current")
    _only(current, {"last"}, "current.")
    current_s = _duration(current.get("last", "1h"), "current.last")
    baseline = _baseline(spec.get("baseline", {"trailing": "7d"}))
    chosen = spec.get("methods", ["domain_classifier", "mmd"])
    if not isinstance(chosen, list) or not chosen or any(m not in METHODS for m in chosen):
        raise InvalidRequest(f"`methods` is a non-empty list of {', '.join(METHODS)}", param="methods")
    th = spec.get("thresholds") or {}
    if not isinstance(th, dict):
        raise InvalidRequest("`thresholds` is an object", param="thresholds")
    _only(th, {"domain_classifier", "mmd_p", "centroid", "output_p"}, "thresholds.")
    auc = _number(th.get("domain_classifier", stats.AUC_THRESHOLD), "thresholds.domain_classifier", 0.5, 1.0)
    mmd_p = _number(th.get("mmd_p", 0.01), "thresholds.mmd_p", 0.0, 0.5)
    output_p = _number(th.get("output_p", 0.01), "thresholds.output_p", 0.0, 0.5)
    cent = th.get("centroid")
    cent = None if cent is None else _number(cent, "thresholds.centroid", 0.0, 2.0)
    langs = spec.get("expected_languages", [])
    if not isinstance(langs, list) or any(not isinstance(x, str) or not _LANG.match(x) for x in langs):
        raise InvalidRequest(
            "`expected_languages` is a list of ISO 639-1 codes like `en`", param="expected_languages"
        )
    return MonitorSpec(
        id=mid, scope=Scope(**scope), baseline=baseline, current_s=current_s, methods=tuple(dict.fromkeys(chosen)),
        auc_threshold=auc, mmd_p=mmd_p, centroid_threshold=cent, output_p=output_p,
        min_samples=int(_number(spec.get("min_samples", 50), "min_samples", 2, 1e6, integer=True)),
        alert_after=int(_number(spec.get("alert_after", 2), "alert_after", 1, 100, integer=True)),
        expected_languages=tuple(langs),
        interval_s=_number(spec.get("interval_s", 3600), "interval_s", 1.0, 30 * 86400.0),
    )  # fmt: skip


def _baseline(b: Any) -> Baseline:
    if not isinstance(b, dict):
        raise InvalidRequest(
            '`baseline` is {"trailing": "7d"} or {"start": ISO, "end": ISO}', param="baseline"
        )
    _only(b, {"trailing", "start", "end"}, "baseline.")
    if "trailing" in b:
        if set(b) != {"trailing"}:
            raise InvalidRequest("a trailing baseline has no start or end", param="baseline")
        return Baseline(trailing_s=_duration(b["trailing"], "baseline.trailing"))
    start, end = _time(b.get("start"), "baseline.start"), _time(b.get("end"), "baseline.end")
    if end <= start:
        raise InvalidRequest("`baseline.end` comes after `baseline.start`", param="baseline.end")
    return Baseline(start=start, end=end)


def _only(d: dict[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown field `{prefix}{unknown[0]}`; use one of {sorted(allowed)}",
            param=f"{prefix}{unknown[0]}",
        )


def _duration(value: Any, param: str) -> float:
    m = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise InvalidRequest(f"`{param}`={value!r} is not a duration like 15m, 2h or 7d", param=param)
    return float(m.group(1)) * _UNITS[m.group(2)]


def _time(value: Any, param: str) -> datetime:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        t = None
    if t is None:
        raise InvalidRequest(f"`{param}`={value!r} is not an ISO 8601 time", param=param)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _number(value: Any, param: str, lo: float, hi: float, *, integer: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and lo <= value <= hi
    if not ok or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(f"`{param}`={value!r} must be {kind} from {lo:g} to {hi:g}", param=param)
    return float(value)


def _fmt(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


@dataclass(slots=True)
class Window:
    """The samples of one window, as the store hands them to :func:`evaluate`."""

    ids: np.ndarray  # drift_samples ids
    embeddings: np.ndarray  # (n, dims) float32
    n_tokens: np.ndarray
    languages: list[str | None]
    odd_chars: np.ndarray  # bool
    templates: list[str]
    response_tokens: np.ndarray | None = None  # float, NaN where the request had no response
    refusals: np.ndarray | None = None  # float 0/1, NaN where unknown

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, dims: int = 0) -> Window:
        return cls(np.zeros(0, np.int64), np.zeros((0, dims), np.float32), np.zeros(0, np.int64), [],
                   np.zeros(0, bool), [])  # fmt: skip


def evaluate(spec: MonitorSpec, baseline: Window, current: Window, *, seed: int = 0) -> dict[str, Any]:
    """One run's result document (module docstring); ``outlier_ids`` lists the flagged current rows."""
    out: dict[str, Any] = {
        "version": REPORT_VERSION, "monitor": spec.id, "n_baseline": len(baseline), "n_current": len(current),
        "methods": {}, "outliers": {}, "templates": {}, "outlier_ids": [],
    }  # fmt: skip
    if len(baseline) < spec.min_samples or len(current) < spec.min_samples:
        out["status"] = Status.INSUFFICIENT_DATA.value
        out["reason"] = (
            f"baseline {len(baseline)}, current {len(current)} samples; each needs {spec.min_samples}"
        )
        return out
    if baseline.embeddings.shape[1] != current.embeddings.shape[1]:
        out["status"] = Status.INSUFFICIENT_DATA.value
        out["reason"] = "the windows were embedded with different dimensions (the embedder changed)"
        return out
    ref, cur = baseline.embeddings, current.embeddings
    res: dict[str, dict[str, Any]] = {}
    if "domain_classifier" in spec.methods:
        auc = stats.domain_classifier_auc(ref, cur, seed=seed)
        m, n = min(len(ref), stats.AUC_MAX_SAMPLES), min(len(cur), stats.AUC_MAX_SAMPLES)
        auc_th = max(spec.auc_threshold, stats.auc_null_quantile(m, n))
        res["domain_classifier"] = {
            "score": auc, "threshold": auc_th, "configured_threshold": spec.auc_threshold, "drift": auc > auc_th,
        }  # fmt: skip
    if "mmd" in spec.methods:
        stat, p = stats.mmd(ref, cur, seed=seed)
        res["mmd"] = {"score": stat, "p_value": p, "threshold": spec.mmd_p, "drift": p < spec.mmd_p}
    if "centroid" in spec.methods:
        d = stats.centroid_distance(ref, cur)
        th = spec.centroid_threshold
        if th is None:
            th = stats.chunk_threshold(ref, len(cur), stats.centroid_distance, seed=seed)
        res["centroid"] = {"score": d, "threshold": th, "drift": th is not None and d > th}
    output = _output(baseline, current)
    for name in OUTPUT_METHODS:
        if name in spec.methods and output.get(name, {}).get("p_value") is not None:
            r = output[name]
            res[name] = {"score": r["score"], "p_value": r["p_value"], "threshold": spec.output_p,
                         "drift": r["p_value"] < spec.output_p}  # fmt: skip
    out["methods"] = res
    out["output"] = output
    drifted = [m for m, r in res.items() if r["drift"]]
    out["status"] = (Status.DRIFT if drifted else Status.NO_DRIFT).value
    out["reason"] = f"drift by {', '.join(drifted)}" if drifted else "no method crossed its threshold"
    out["outliers"], flagged = _outliers(spec, baseline, current)
    out["outlier_ids"] = [int(i) for i in current.ids[flagged]]
    out["templates"] = _templates(baseline, current)
    return out


def _outliers(spec: MonitorSpec, baseline: Window, current: Window) -> tuple[dict[str, Any], np.ndarray]:
    fence = LengthFence.of(baseline.n_tokens)
    long = (
        np.array([fence.is_long(float(n)) for n in current.n_tokens])
        if fence
        else np.zeros(len(current), bool)
    )
    expected = set(spec.expected_languages)
    lang = np.array(
        [bool(expected) and la is not None and la not in expected for la in current.languages], bool
    )
    odd = current.odd_chars.astype(bool)
    far = far_from_baseline(baseline.embeddings, current.embeddings)
    flagged = long | lang | odd | far
    n = max(len(current), 1)
    languages: dict[str, int] = {}
    for la in current.languages:
        languages[la or "unknown"] = languages.get(la or "unknown", 0) + 1
    return {
        "long": int(long.sum()), "language": int(lang.sum()), "characters": int(odd.sum()),
        "neighbours": int(far.sum()),
        "rate": float(flagged.sum() / n), "languages": languages,
        "length_median_baseline": fence.median if fence else None,
        "length_median_current": float(np.median(current.n_tokens)) if len(current) else None,
    }, flagged  # fmt: skip


def _templates(baseline: Window, current: Window, top: int = 10) -> dict[str, Any]:
    seen = set(baseline.templates)
    unseen = sum(1 for t in current.templates if t not in seen)
    base_counts: dict[str, int] = {}
    for t in baseline.templates:
        base_counts[t] = base_counts.get(t, 0) + 1
    cur_counts: dict[str, int] = {}
    for t in current.templates:
        cur_counts[t] = cur_counts.get(t, 0) + 1
    nb, nc = max(len(baseline), 1), max(len(current), 1)
    rows = [
        {"template": t, "current_share": c / nc, "baseline_share": base_counts.get(t, 0) / nb}
        for t, c in sorted(cur_counts.items(), key=lambda kv: -kv[1])[:top]
    ]
    return {"unseen_rate": unseen / nc, "unseen": unseen, "top": rows}


def _output(baseline: Window, current: Window) -> dict[str, Any]:
    """Response length (Mann-Whitney U, normal approximation with tie correction) and refusal rate
    (two-proportion z-test) of the current window against the baseline; p-values two-sided."""
    out: dict[str, Any] = {}
    if baseline.response_tokens is not None and current.response_tokens is not None:
        a = baseline.response_tokens[~np.isnan(baseline.response_tokens)]
        b = current.response_tokens[~np.isnan(current.response_tokens)]
        if len(a) >= 2 and len(b) >= 2:
            out["response_length"] = {
                "score": float(np.median(b) - np.median(a)), "median_baseline": float(np.median(a)),
                "median_current": float(np.median(b)), "p_value": stats.mann_whitney_p(a, b),
            }  # fmt: skip
    if baseline.refusals is not None and current.refusals is not None:
        a = baseline.refusals[~np.isnan(baseline.refusals)]
        b = current.refusals[~np.isnan(current.refusals)]
        if len(a) and len(b):
            out["refusal_rate"] = {
                "score": float(b.mean() - a.mean()), "baseline": float(a.mean()), "current": float(b.mean()),
                "p_value": stats.two_proportion_p(float(a.sum()), len(a), float(b.sum()), len(b)),
            }  # fmt: skip
    return out


def alert(status: str, previous: list[str], alert_after: int) -> bool:
    """Whether a run of ``status`` after ``previous`` statuses (newest first) alerts."""
    if status != Status.DRIFT.value:
        return False
    return len(previous) >= alert_after - 1 and all(
        s == Status.DRIFT.value for s in previous[: alert_after - 1]
    )
