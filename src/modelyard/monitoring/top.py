"""``modelyard top``: a live terminal view of a running server, read from its ``/metrics``.

Two scrapes ``interval`` apart give rates: requests/s, generated tokens/s and TTFT percentiles from
the histogram buckets that moved in between (cumulative ones on the first frame). Per model: the
requests finished, errors, TTFT p50/p95, tokens/s, and the engine's running / waiting requests and
KV-cache usage when the model runs on the built-in engine.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus exposition, keyed by name and sorted labels."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(url: str, timeout_s: float = 5.0, api_key: str | None = None) -> Samples:
    """Parse the server's ``/metrics``; raises ``httpx.HTTPStatusError`` on a refusal (401/403)."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else None
    response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s, headers=headers)
    response.raise_for_status()
    return parse(response.text)


@dataclass(slots=True)
class ModelRow:
    model: str
    requests: float = 0.0
    errors: float = 0.0
    req_per_s: float | None = None
    tokens_per_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    running: float | None = None
    waiting: float | None = None
    kv_usage: float | None = None


def _by_model(s: Samples, name: str, label: str = "model") -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, labels), v in s.items():
        if n == name:
            out[dict(labels).get(label, "")] += v
    return out


def _quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``{le: count}``."""
    if not buckets:
        return None
    les = sorted(buckets)
    total = buckets[les[-1]]
    if total <= 0:
        return None
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0.0)
        prev_le, prev_c = le, c
    return prev_le


def _ttft_buckets(s: Samples, prev: Samples | None) -> dict[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for key, v in s.items():
        name, labels = key
        if name != "modelyard_time_to_first_token_seconds_bucket":
            continue
        d = dict(labels)
        out[d["model"]][float(d["le"])] += v - (prev.get(key, 0.0) if prev else 0.0)
    return out


def summarize(cur: Samples, prev: Samples | None = None, dt_s: float | None = None) -> list[ModelRow]:
    """One row per model seen in ``cur``; rates need ``prev`` and the seconds ``dt_s`` between."""
    reqs = _by_model(cur, "modelyard_requests_total")
    fails = _by_model(cur, "modelyard_request_failures_total")
    toks = _by_model(cur, "modelyard_generation_tokens_total")
    p_reqs = _by_model(prev, "modelyard_requests_total") if prev else {}
    p_toks = _by_model(prev, "modelyard_generation_tokens_total") if prev else {}
    running = _by_model(cur, "vllm:num_requests_running", "model_name")
    waiting = _by_model(cur, "vllm:num_requests_waiting", "model_name")
    kv = _by_model(cur, "vllm:kv_cache_usage_perc", "model_name")
    ttft = _ttft_buckets(cur, prev)
    rows = []
    for model in sorted(set(reqs) | set(running)):
        row = ModelRow(model, requests=reqs.get(model, 0.0), errors=fails.get(model, 0.0))
        if prev is not None and dt_s:
            row.req_per_s = (reqs.get(model, 0.0) - p_reqs.get(model, 0.0)) / dt_s
            row.tokens_per_s = (toks.get(model, 0.0) - p_toks.get(model, 0.0)) / dt_s
        row.ttft_p50_s = _quantile(0.5, ttft.get(model, {}))
        row.ttft_p95_s = _quantile(0.95, ttft.get(model, {}))
        if model in running:
            row.running, row.waiting, row.kv_usage = running[model], waiting.get(model), kv.get(model)
        rows.append(row)
    return rows


def _fmt(v: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, spec)


def render(url: str, rows: list[ModelRow], cur: Samples) -> Group:
    streams = sum(v for (n, _), v in cur.items() if n == "modelyard_active_streams")
    dropped = sum(v for (n, _), v in cur.items() if n == "modelyard_request_log_dropped_total")
    table = Table(title=f"modelyard top  {url}", title_justify="left")
    for col in (
        "model",
        "requests",
        "errors",
        "req/s",
        "tok/s",
        "TTFT p50 ms",
        "TTFT p95 ms",
        "running",
        "waiting",
        "KV %",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            r.model,
            f"{r.requests:.0f}",
            f"{r.errors:.0f}",
            _fmt(r.req_per_s, ".1f"),
            _fmt(r.tokens_per_s, ".1f"),
            _fmt(r.ttft_p50_s, ".1f", 1000),
            _fmt(r.ttft_p95_s, ".1f", 1000),
            _fmt(r.running, ".0f"),
            _fmt(r.waiting, ".0f"),
            _fmt(r.kv_usage, ".1f", 100),
        )
    footer = Text(f"active streams {streams:.0f}   request-log drops {dropped:.0f}   (Ctrl-C to quit)")
    return Group(table, footer)


def run(url: str, interval_s: float, once: bool, api_key: str | None = None) -> Group | None:
    """Show the live view until Ctrl-C; with ``once`` return a single frame (two scrapes apart)."""
    prev = scrape(url, api_key=api_key)
    t_prev = time.monotonic()
    if once:
        time.sleep(interval_s)
        cur = scrape(url, api_key=api_key)
        return render(url, summarize(cur, prev, time.monotonic() - t_prev), cur)
    with Live(render(url, summarize(prev), prev), refresh_per_second=4, screen=False) as live:
        while True:
            time.sleep(interval_s)
            cur = scrape(url, api_key=api_key)
            now = time.monotonic()
            live.update(render(url, summarize(cur, prev, now - t_prev), cur))
            prev, t_prev = cur, now
