"""Shadow-traffic overhead: the primary's latency with shadowing off and on, in one run.

Two ``modelyard serve`` processes on the same mock upstream (so the shadow target is a remote and does
not share the cores with the engine): ``off`` serves ``bench``; ``shadow`` also mirrors every ``bench``
request to the deployment ``bench-shadow`` (the same mock). Each round loads both in turn with
``bench/gateway.py``'s closed-loop generator; the median round is reported, with the ratio of the
primary's p50 (and p99) latency on to off.

    python -m bench.experiments --duration 3 --concurrency 1 8 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway import _free_port, _load, _wait

HERE = Path(__file__).resolve().parent


def _serve(tmp: Path, mock_port: int, shadow: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    upstream = f"http://127.0.0.1:{mock_port}/v1"
    config: dict[str, Any] = {
        "data_dir": str(tmp / f"data-{port}"),
        "local_models": [],
        "embedders": [],
        "tenancy": {"enabled": False},
        "deployments": [
            {"model": "bench", "base_url": upstream},
            {"model": "bench-shadow", "base_url": upstream, "upstream_model": "bench"},
        ],
    }
    if shadow:
        config["experiments"] = {"shadows": [{"route": "bench", "targets": ["bench-shadow"]}]}
    cfg = tmp / f"cfg-{port}.json"
    cfg.write_text(json.dumps(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "modelyard.cli", "serve", "--config", str(cfg), "--port", str(port)]
    return subprocess.Popen([*cmd, "--log-level", "warning"], env=env), port


async def run(concurrencies: list[int], duration_s: float, rounds: int) -> list[dict[str, Any]]:
    mock_port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-experiments-"))
    mock = subprocess.Popen([sys.executable, "-P", str(HERE / "mock_upstream.py"), "--port", str(mock_port)])
    procs: list[subprocess.Popen[bytes]] = []
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        await _wait(f"http://127.0.0.1:{mock_port}/stats")
        urls = {}
        for mode in ("off", "shadow"):
            proc, port = _serve(tmp, mock_port, mode == "shadow")
            procs.append(proc)
            await _wait(f"http://127.0.0.1:{port}/ready")
            urls[mode] = f"http://127.0.0.1:{port}/v1/chat/completions"
        for _ in range(rounds):
            for c in concurrencies:
                for mode, url in urls.items():
                    r = await _load(url, stream=False, concurrency=c, duration_s=duration_s)
                    samples.setdefault((mode, c), []).append(r)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        mock.terminate()
        mock.wait(timeout=20)
    med = {
        k: {f: statistics.median(x[f] for x in v) for f in ("rps", "p50", "p99")} for k, v in samples.items()
    }
    rows = []
    for c in concurrencies:
        off, on = med[("off", c)], med[("shadow", c)]
        rows.append({
            "concurrency": c, "off_p50_ms": round(off["p50"], 3), "shadow_p50_ms": round(on["p50"], 3),
            "p50_x": round(on["p50"] / off["p50"], 3), "p99_x": round(on["p99"] / off["p99"], 3),
            "rps_x": round(on["rps"] / off["rps"], 3),
        })  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    for row in asyncio.run(run(args.concurrency, args.duration, args.rounds)):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
