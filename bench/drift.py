"""Drift monitoring costs: prompts embedded per second by the consumer's embedder, and one monitor
run (domain classifier + MMD + centroid, the default subsampling) on 10,000 vs 10,000 embeddings.

The monitor run's cost depends on the window sizes and dimensions only, so its windows are the
synthetic stream of ``tests/drift_stream.py`` embedded by the hashing embedder (384 dimensions) before
and after the topic change; the embedding rate is the packaged MiniLM's on the same prompts.

    python -m bench.drift --prompts 2000 --repeats 3
    python -m bench.drift --latency --duration 8 --repeats 3 --sample-rate 0.1

``--latency`` measures the request path instead: ``modelyard serve`` on the mock upstream with the
drift consumer off, then on (``--sample-rate``, ``--cpu-share``, every second), one server at a
time so the consumer's CPU cannot slow the other; each round first loads the server unmeasured for
``--settle`` seconds, so that the consumer has rows to embed while latency is measured, and reports
the median round's p50 and p99 with the on/off ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from drift_stream import AFTER, BEFORE, HashingEmbedder, window  # noqa: E402


def embed_rate(n: int, batch: int, repeats: int) -> dict[str, float]:
    import torch

    from modelyard.embeddings import load_embedder

    emb = load_embedder("packaged:all-minilm-l6-v2", max_batch=batch)
    texts = window(n, BEFORE, np.random.default_rng(0))
    emb.embed(texts[:batch])  # warm-up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, n, batch):
            emb.embed(texts[i : i + batch])
        rates.append(n / (time.perf_counter() - t))
    return {"prompts_per_s_median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "torch_threads": torch.get_num_threads(), "batch": batch, "prompts": n}  # fmt: skip


def monitor_run(n: int, repeats: int) -> dict[str, object]:
    from modelyard.monitoring.drift.monitors import MonitorSpec, Window, evaluate

    rng = np.random.default_rng(1)
    emb = HashingEmbedder()

    def w(mix: dict[str, float], start: int) -> Window:
        texts = window(n, mix, rng)
        return Window(np.arange(start, start + n), emb.embed(texts), np.array(emb.count_tokens(texts)),
                      ["en"] * n, np.zeros(n, bool), [str(hash(t) % 50) for t in texts])  # fmt: skip

    base, cur = w(BEFORE, 0), w(AFTER, n)
    spec = MonitorSpec(id="bench", methods=("domain_classifier", "mmd", "centroid"), min_samples=10)
    times, status = [], ""
    for i in range(repeats):
        t = time.perf_counter()
        status = evaluate(spec, base, cur, seed=i)["status"]
        times.append(time.perf_counter() - t)
    return {"run_s_median": statistics.median(times), "min": min(times), "max": max(times),
            "n_baseline": n, "n_current": n, "status": status}  # fmt: skip


def latency(
    concurrency: int, duration_s: float, settle_s: float, rounds: int, sample_rate: float, cpu_share: float
) -> dict[str, object]:
    import asyncio
    import subprocess
    import tempfile

    from bench.gateway import _free_port, _load, _wait

    here = Path(__file__).resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-drift-"))

    async def one(mode: str, mock_port: int) -> dict[str, float]:
        port = _free_port()
        config: dict[str, object] = {
            "data_dir": str(tmp / f"data-{mode}"), "local_models": [], "embedders": [],
            "tenancy": {"enabled": False},
            "deployments": [{"model": "bench", "base_url": f"http://127.0.0.1:{mock_port}/v1"}],
            "monitoring": {"drift": {"enabled": mode == "on", "sample_rate": sample_rate, "cpu_share": cpu_share,
                                     "interval_s": 1.0}},
        }  # fmt: skip
        cfg = tmp / f"cfg-{mode}.json"
        cfg.write_text(json.dumps(config))
        cmd = [sys.executable, "-m", "modelyard.cli", "serve", "--config", str(cfg), "--port", str(port)]
        proc = subprocess.Popen([*cmd, "--log-level", "warning"], env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            await _wait(f"http://127.0.0.1:{port}/ready")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            await _load(url, stream=False, concurrency=concurrency, duration_s=settle_s)
            return await _load(url, stream=False, concurrency=concurrency, duration_s=duration_s)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    async def run() -> dict[str, list[dict[str, float]]]:
        mock_port = _free_port()
        mock = subprocess.Popen(
            [sys.executable, "-P", str(here / "mock_upstream.py"), "--port", str(mock_port)]
        )
        out: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        try:
            await _wait(f"http://127.0.0.1:{mock_port}/stats")
            for _ in range(rounds):
                for mode in ("off", "on"):
                    out[mode].append(await one(mode, mock_port))
        finally:
            mock.terminate()
            mock.wait(timeout=20)
        return out

    samples = asyncio.run(run())
    med = {
        m: {f: statistics.median(x[f] for x in v) for f in ("rps", "p50", "p99")} for m, v in samples.items()
    }
    return {
        "concurrency": concurrency, "off_p50_ms": round(med["off"]["p50"], 3), "on_p50_ms": round(med["on"]["p50"], 3),
        "p50_x": round(med["on"]["p50"] / med["off"]["p50"], 3), "p99_x": round(med["on"]["p99"] / med["off"]["p99"], 3),
        "rps_x": round(med["on"]["rps"] / med["off"]["rps"], 3), "rounds": rounds,
        "sample_rate": sample_rate, "cpu_share": cpu_share,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--window", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency", action="store_true", help="request-path latency, consumer off vs on")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--sample-rate", type=float, default=0.1)
    ap.add_argument("--cpu-share", type=float, default=0.5)
    args = ap.parse_args()
    if args.latency:
        row = latency(
            args.concurrency, args.duration, args.settle, args.repeats, args.sample_rate, args.cpu_share
        )
        print(json.dumps(row, indent=2))
        return
    out = {
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "embed": embed_rate(args.prompts, args.batch, args.repeats),
        "monitor_run": monitor_run(args.window, args.repeats),
    }  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
