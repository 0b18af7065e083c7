"""The HTML page of an experiment report, rendered from its JSON document only: the decision, the
per-variant table, the comparisons, and a plot of the primary metric over time per variant with its
always-valid interval (matplotlib, embedded as a PNG)."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from typing import Any


def timeline_png(doc: dict[str, Any]) -> bytes | None:
    """The primary metric over time per variant with its interval band; None without a timeline."""
    points = doc.get("timeline") or []
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    try:
        for name in doc["variants"]:
            xs: list[Any] = []
            mean, low, high = [], [], []
            for p in points:
                v = p["variants"].get(name)
                if v is not None and None not in (v["mean"], v["low"], v["high"]):
                    xs.append(datetime.fromisoformat(p["at"]))
                    mean.append(v["mean"])
                    low.append(v["low"])
                    high.append(v["high"])
            if xs:
                (line,) = ax.plot(xs, mean, label=name)
                ax.fill_between(xs, low, high, alpha=0.2, color=line.get_color())
        ax.set_title(f"{doc['primary_metric']} by variant (always-valid {1 - doc['alpha']:.0%} interval)")
        ax.legend(loc="best")
        fig.autofmt_xdate()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(str(x))


def render_html(doc: dict[str, Any]) -> str:
    e = html.escape
    exp = doc["experiment"]
    d = doc["decision"]
    metrics = [doc["primary_metric"], *doc["guardrails"]]
    rows = []
    for name, v in doc["variants"].items():
        cells = "".join(
            f"<td>{_fmt(v['metrics'][m]['mean'])} (n={v['metrics'][m]['n']})</td>" for m in metrics
        )
        rows.append(
            f"<tr><td>{e(name)}</td><td>{v['weight']}</td><td>{v['units']}</td><td>{v['requests']}</td>{cells}</tr>"
        )
    comps = []
    for name, per in doc["comparisons"].items():
        for m, c in per.items():
            if c is None:
                comps.append(f"<tr><td>{e(name)}</td><td>{e(m)}</td><td colspan=4>no data</td></tr>")
                continue
            s, w = c["sequential"], c["welch"]
            comps.append(
                f"<tr><td>{e(name)}</td><td>{e(m)}</td><td>{_fmt(s['lift'])}</td>"
                f"<td>[{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]</td><td>{_fmt(w['relative'])}</td>"
                f"<td>{_fmt(w['p_value'])} / {_fmt(w.get('p_holm'))}</td></tr>"
            )
    png = timeline_png(doc)
    img = (
        f'<img alt="timeline" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png
        else "<p>no data to plot</p>"
    )
    head = "".join(f"<th>{e(m)}</th>" for m in metrics)
    srm = doc["srm"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>experiment {e(exp["id"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style>
</head><body>
<h1>Experiment {e(exp["id"])} on <code>{e(exp["route"])}</code> ({e(exp["status"])})</h1>
<h2>Decision: {e(d["action"])}</h2><p>{e(d["reason"])}</p>
<p>SRM chi-square p = {_fmt(srm["p_value"])} ({"passed" if srm["passed"] else "FAILED: results untrustworthy"})</p>
<h2>Variants</h2><table><tr><th>variant</th><th>weight</th><th>units</th><th>requests</th>{head}</tr>{"".join(rows)}</table>
<h2>Against {e(doc["control"])}</h2>
<table><tr><th>variant</th><th>metric</th><th>lift</th><th>always-valid interval</th><th>relative</th><th>Welch p / Holm</th></tr>{"".join(comps)}</table>
<h2>{e(doc["primary_metric"])} over time</h2>{img}
</body></html>
"""
