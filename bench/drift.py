"""Drift monitoring costs: prompts embedded per second by the consumer's embedder, and one monitor
run (domain classifier + MMD + centroid, the default subsampling) on 10,000 vs 10,000 embeddings.

The monitor run's cost depends on the window sizes and dimensions only, so its windows are the
synthetic stream of ``tests/drift_stream.py`` embedded by the hashing embedder (384 dimensions) before
and after the topic change; the embedding rate is the packaged MiniLM's on the same prompts.

    python -m bench.drift --prompts 2000 --repeats 3
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--window", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "embed": embed_rate(args.prompts, args.batch, args.repeats),
        "monitor_run": monitor_run(args.window, args.repeats),
    }  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
