"""Gateway overhead: the same requests sent straight to a mock upstream and through ``modelyard serve``.

Starts ``bench/mock_upstream.py`` (answers instantly) and ``modelyard serve`` with one
``openai_compat`` deployment on it, then drives both with a closed-loop aiohttp load generator at
each concurrency, streaming and not. Everything shares this machine's cores, so the figures are
an upper bound on the overhead.

    python -m bench.gateway                 # rich table
    python -m bench.gateway --json          # [{"stream", "concurrency", "direct_p50_ms", ...}, ...]
    python -m bench.gateway --duration 2 --concurrency 1 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
BODY = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say hello in five words please"}],
    "max_tokens": 16,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not come up")


async def _load(
    url: str, *, stream: bool, concurrency: int, duration_s: float, key: str | None = None
) -> dict[str, float]:
    """Closed loop: ``concurrency`` workers send back-to-back for ``duration_s``; latencies in ms.

    ``key`` is sent as a bearer token (the tenancy bench reuses this load generator)."""
    payload = json.dumps({**BODY, "stream": stream}).encode()
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            t0 = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as r:
                body = await r.read()
                if r.status != 200 or (stream and not body.endswith(b"data: [DONE]\n\n")):
                    raise RuntimeError(f"bad answer {r.status}: {body[:200]!r}")
            latencies.append((time.perf_counter() - t0) * 1000)

        for _ in range(min(concurrency, 8)):  # warm the pools on both sides
            await one()
        latencies.clear()
        stop = time.perf_counter() + duration_s

        async def worker() -> None:
            while time.perf_counter() < stop:
                await one()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "rps": len(latencies) / elapsed,
    }


async def run(concurrencies: list[int], duration_s: float, streams: list[bool]) -> list[dict[str, Any]]:
    mock_port, gw_port = _free_port(), _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    cfg = tmp / "modelyard.yaml"
    cfg.write_text(
        json.dumps(
            {
                "data_dir": str(tmp / "data"),
                "local_models": [],
                "embedders": [],
                "deployments": [{"model": "bench", "base_url": f"http://127.0.0.1:{mock_port}/v1"}],
            }
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-P", str(HERE / "mock_upstream.py"), "--port", str(mock_port)]),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard.cli",
                "serve",
                "--config",
                str(cfg),
                "--port",
                str(gw_port),
                "--log-level",
                "warning",
            ],
            env=env,
        ),
    ]
    rows = []
    try:
        await _wait(f"http://127.0.0.1:{mock_port}/stats")
        await _wait(f"http://127.0.0.1:{gw_port}/ready")
        direct = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
        gateway = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        for stream in streams:
            for c in concurrencies:
                d = await _load(direct, stream=stream, concurrency=c, duration_s=duration_s)
                g = await _load(gateway, stream=stream, concurrency=c, duration_s=duration_s)
                rows.append(
                    {
                        "stream": stream,
                        "concurrency": c,
                        "direct_p50_ms": round(d["p50"], 3),
                        "direct_p99_ms": round(d["p99"], 3),
                        "gateway_p50_ms": round(g["p50"], 3),
                        "gateway_p99_ms": round(g["p99"], 3),
                        "gateway_rps": round(g["rps"], 1),
                        "direct_rps": round(d["rps"], 1),
                    }
                )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Measure modelyard's gateway overhead against a mock upstream."
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--stream", choices=["both", "yes", "no"], default="both")
    args = parser.parse_args()
    streams = {"both": [False, True], "yes": [True], "no": [False]}[args.stream]
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    rows = runner(run(args.concurrency, args.duration, streams))
    if args.json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="modelyard gateway overhead (mock upstream, loopback)")
    for col in (
        "stream",
        "conc.",
        "direct p50 ms",
        "direct p99 ms",
        "gateway p50 ms",
        "gateway p99 ms",
        "added p50 ms",
        "gateway req/s",
        "direct req/s",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["stream"]),
            str(r["concurrency"]),
            f"{r['direct_p50_ms']:.3f}",
            f"{r['direct_p99_ms']:.3f}",
            f"{r['gateway_p50_ms']:.3f}",
            f"{r['gateway_p99_ms']:.3f}",
            f"{r['gateway_p50_ms'] - r['direct_p50_ms']:.3f}",
            f"{r['gateway_rps']:.0f}",
            f"{r['direct_rps']:.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
