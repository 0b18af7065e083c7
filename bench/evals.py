"""Throughput of ``modelyard eval run`` against the local engine, beside a plain async ``openai`` loop.

Both send the same requests (the committed ``evals/suites/capitals.yaml``: same messages, parameters
and seeds) to the same ``modelyard serve`` (the packaged SmolLM2-135M-Instruct), at concurrency 1 and
8. The runner is timed through :func:`modelyard.evals.execute.execute` (suite validation, dataset
digest, pre-flight, requests, scoring, summary and gate; the interpreter start-up of the command is
left out), the baseline as ``asyncio.gather`` of ``chat.completions.create`` under a semaphore.
``overhead`` = plain items/s / runner items/s (1.0 = no cost).

Run: ``python -m bench.evals`` (starts a server; ``--url`` to use a running one; ``--rounds 2`` to
alternate the two several times). Prints a table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "evals" / "suites" / "capitals.yaml"
SMOL = "smollm2-135m-instruct"


async def runner_rate(url: str, concurrency: int, data_dir: Path) -> tuple[float, float]:
    """(items/s, pass rate) of the eval runner."""
    from modelyard.evals.execute import execute
    from modelyard.evals.progress import NullProgress
    from modelyard.evals.suite import load_suite
    from modelyard.settings import Settings

    suite = load_suite(SUITE).model_copy(update={"concurrency": concurrency})
    settings = Settings(data_dir=data_dir)
    t0 = time.perf_counter()
    doc = await execute(suite, settings, NullProgress(), base_dir=SUITE.parent, url=url, store=False)
    elapsed = time.perf_counter() - t0
    summary = next(iter(doc["summary"].values()))
    return len(doc["results"]) / elapsed, float(summary["pass_rate"] or 0.0)


async def plain_rate(url: str, concurrency: int) -> float:
    from modelyard.evals.suite import load_suite
    from modelyard.registry.datasets import load_jsonl

    suite = load_suite(SUITE)
    items = load_jsonl(SUITE.parent / suite.dataset)
    target = suite.targets[0]
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="bench", max_retries=suite.retries, timeout=suite.timeout
    )
    sem = asyncio.Semaphore(concurrency)

    async def one(messages: Any) -> str:
        async with sem:
            resp = await client.chat.completions.create(
                model=target.model or SMOL, messages=messages, seed=suite.seed, **target.parameters
            )
            return resp.choices[0].message.content or ""

    t0 = time.perf_counter()
    await asyncio.gather(*(one(item.input) for item in items))
    elapsed = time.perf_counter() - t0
    await client.close()
    return len(items) / elapsed


def _start_server(tmp: Path) -> tuple[Any, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import RemoteServer

    config = {
        "local_models": [{"name": SMOL, "source": f"packaged:{SMOL}"}],
        "embedders": [],
        "model_cache_dir": str(Path.home() / ".cache" / "modelyard" / "models"),
        "engine": {"max_model_len": 2048},
    }
    srv = RemoteServer(tmp, config, ready_timeout_s=900)
    return srv, srv.url


async def measure(url: str, concurrencies: list[int], rounds: int, data_dir: Path) -> list[dict[str, Any]]:
    await plain_rate(url, 8)  # warm-up: first requests compile kernels and fill caches
    rows = []
    for c in concurrencies:
        runs, plains, rates = [], [], []
        for _ in range(rounds):
            r, pass_rate = await runner_rate(url, c, data_dir)
            runs.append(r)
            rates.append(pass_rate)
            plains.append(await plain_rate(url, c))
        runner, plain = max(runs), max(plains)
        rows.append(
            {
                "concurrency": c,
                "runner_items_s": runner,
                "plain_items_s": plain,
                "overhead": plain / runner,
                "pass_rate": rates[0],
                "runner_all": runs,
                "plain_all": plains,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running modelyard serve with SmolLM2 (default: start one).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        srv = None
        url = args.url
        if url is None:
            srv, url = _start_server(Path(tmp))
        try:
            rows = asyncio.run(measure(url.rstrip("/"), args.concurrency, args.rounds, Path(tmp) / "data"))
        finally:
            if srv is not None:
                srv.close()
    print(f"{'conc':>4} {'runner items/s':>15} {'plain items/s':>14} {'overhead':>9} {'pass rate':>9}")
    for r in rows:
        print(
            f"{r['concurrency']:>4} {r['runner_items_s']:>15.2f} {r['plain_items_s']:>14.2f} {r['overhead']:>9.2f} {r['pass_rate']:>9.3f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"suite": str(SUITE.relative_to(ROOT)), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
