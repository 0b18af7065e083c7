"""The drift report of one monitor: a JSON document (version 1) and the HTML page rendered from it.

The document holds the monitor, its runs (oldest first: status, alert, each method's score, the MMD
p-value, outlier and unseen-template rates), the latest run's result, and from the latest run's two
windows a 2-D PCA projection of baseline vs current (at most :data:`PROJECTED` points a side), their
lengths in tokens, the language mix and the top templates. The page embeds its plots as base64 PNGs
(matplotlib, imported when rendering), so it is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelyard.monitoring.drift.store import DriftStore

VERSION = 1
PROJECTED = 300


def build_report(store: DriftStore, monitor_id: str, *, runs: int = 200) -> dict[str, Any]:
    monitor = store.get_monitor(monitor_id)
    history = list(reversed(store.runs(monitor_id, limit=runs)))
    doc: dict[str, Any] = {
        "version": VERSION, "kind": "drift_report", "generated_at": datetime.now(UTC).isoformat(),
        "monitor": monitor.as_dict(), "runs": [_summary(r) for r in history],
        "latest": history[-1]["result"] if history else None,
        "projection": None, "lengths": None,
    }  # fmt: skip
    windows = (doc["latest"] or {}).get("windows")
    if windows:
        b = store.window(monitor.spec.scope, *(datetime.fromisoformat(t) for t in windows["baseline"]))
        c = store.window(monitor.spec.scope, *(datetime.fromisoformat(t) for t in windows["current"]))
        doc["lengths"] = {"baseline": b.n_tokens.tolist(), "current": c.n_tokens.tolist()}
        if len(b) >= 2 and len(c) >= 2 and b.embeddings.shape[1] == c.embeddings.shape[1]:
            doc["projection"] = _project(b.embeddings, c.embeddings)
    return doc


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    r = run["result"]
    methods = r.get("methods", {})
    return {
        "started_at": run["started_at"], "status": run["status"], "alert": bool(run["alert"]),
        "scores": {m: v["score"] for m, v in methods.items()},
        "mmd_p_value": methods.get("mmd", {}).get("p_value"),
        "outlier_rate": r.get("outliers", {}).get("rate"),
        "unseen_template_rate": r.get("templates", {}).get("unseen_rate"),
        "n_baseline": r.get("n_baseline"), "n_current": r.get("n_current"),
    }  # fmt: skip


def _project(baseline: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    b = baseline[rng.permutation(len(baseline))[:PROJECTED]].astype(np.float64)
    c = current[rng.permutation(len(current))[:PROJECTED]].astype(np.float64)
    z = np.vstack([b, c])
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    pts = (z - mean) @ vt[:2].T
    return {
        "method": "pca",
        "baseline": np.round(pts[: len(b)], 4).tolist(),
        "current": np.round(pts[len(b) :], 4).tolist(),
    }


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(doc: dict[str, Any]) -> dict[str, str]:
    """{title: base64 PNG} for the plots the document has data for."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out: dict[str, str] = {}
    runs = doc["runs"]
    if runs:
        fig, ax = plt.subplots(figsize=(8, 3.2), dpi=90)
        xs: Any = [datetime.fromisoformat(r["started_at"]) for r in runs]
        for method in sorted({m for r in runs for m in r["scores"]}):
            ax.plot(xs, [r["scores"].get(method) for r in runs], marker=".", label=method)
        for x, r in zip(xs, runs, strict=True):
            if r["alert"]:
                ax.axvline(x, color="red", alpha=0.25)
        ax.set_title("score by run (red: alert)")
        ax.legend(loc="best")
        fig.autofmt_xdate()
        out["Scores over time"] = _png(fig)
        plt.close(fig)
    proj = doc.get("projection")
    if proj:
        fig, ax = plt.subplots(figsize=(5, 5), dpi=90)
        for name, color in (("baseline", "tab:blue"), ("current", "tab:orange")):
            p = np.asarray(proj[name])
            ax.scatter(p[:, 0], p[:, 1], s=8, alpha=0.5, label=name, color=color)
        ax.set_title("PCA of baseline vs current embeddings")
        ax.legend(loc="best")
        out["Baseline vs current (2-D projection)"] = _png(fig)
        plt.close(fig)
    latest = doc.get("latest") or {}
    top = (latest.get("templates") or {}).get("top") or []
    if top:
        fig, ax = plt.subplots(figsize=(8, 3.2), dpi=90)
        idx = np.arange(len(top))
        ax.barh(idx - 0.2, [t["baseline_share"] for t in top], height=0.4, label="baseline")
        ax.barh(idx + 0.2, [t["current_share"] for t in top], height=0.4, label="current")
        ax.set_yticks(idx, [t["template"] for t in top])
        ax.invert_yaxis()
        ax.set_title("top templates of the current window (share)")
        ax.legend(loc="best")
        out["Template shares"] = _png(fig)
        plt.close(fig)
    lengths = doc.get("lengths")
    languages = (latest.get("outliers") or {}).get("languages") or {}
    if lengths or languages:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=90)
        if lengths:
            for name in ("baseline", "current"):
                if lengths[name]:
                    a1.hist(lengths[name], bins=30, alpha=0.5, density=True, label=name)
            a1.set_title("length in tokens")
            a1.legend(loc="best")
        if languages:
            a2.bar(list(languages), list(languages.values()))
            a2.set_title("languages of the current window")
        out["Lengths and languages"] = _png(fig)
        plt.close(fig)
    return out


def render_html(doc: dict[str, Any]) -> str:
    e = html.escape
    m = doc["monitor"]
    latest = doc.get("latest")
    rows = "".join(
        f"<tr><td>{e(r['started_at'])}</td><td>{e(r['status'])}</td><td>{'yes' if r['alert'] else ''}</td>"
        f"<td>{e(', '.join(f'{k} {v:.4g}' for k, v in r['scores'].items()))}</td>"
        f"<td>{_f(r['mmd_p_value'])}</td><td>{_f(r['outlier_rate'])}</td><td>{_f(r['unseen_template_rate'])}</td>"
        f"<td>{r['n_baseline']} / {r['n_current']}</td></tr>"
        for r in reversed(doc["runs"][-50:])
    )
    status = e(latest["status"]) if latest else "no runs yet"
    reason = e(latest.get("reason", "")) if latest else ""
    figures = "".join(
        f"<h2>{e(title)}</h2><img alt='{e(title)}' src='data:image/png;base64,{png}'>"
        for title, png in plots(doc).items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>drift report: {e(m['id'])}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>"
        f"<h1>Drift monitor <code>{e(m['id'])}</code></h1>"
        f"<p>Scope: <code>{e(str(m['scope']))}</code>; methods: {e(', '.join(m['methods']))}.</p>"
        f"<p><b>Latest: {status}</b> {reason}</p>{figures}"
        "<h2>Runs (newest first)</h2><table><tr><th>at</th><th>status</th><th>alert</th><th>scores</th>"
        f"<th>MMD p</th><th>outlier rate</th><th>unseen templates</th><th>n</th></tr>{rows}</table>"
        f"<p>Report version {doc['version']}, generated {e(doc['generated_at'])}.</p></body></html>"
    )


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.4g}"
