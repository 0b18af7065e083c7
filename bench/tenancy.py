"""Tenancy overhead: ``bench/gateway.py``'s load against ``modelyard serve`` with tenancy off and on.

"off": ``tenancy.enabled: false`` (no auth, no limits, no metering). "on": auth required (a tenant
key; its HMAC lookup hits the metadata store on every request), a tenant with RPM/TPM/concurrency
limits and a token budget high enough never to refuse (every rule is still evaluated, in process,
or in Redis with ``--redis``), and metering of every request into the SQLite ledger.

    python -m bench.tenancy --duration 3 --concurrency 1 16
    python -m bench.tenancy --redis redis://127.0.0.1:6379/0 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway import _free_port, _load, _wait

HERE = Path(__file__).resolve().parent

SECRET = secrets.token_urlsafe(48)


def _serve(tmp: Path, mock_port: int, tenancy: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = _free_port()
    cfg = tmp / f"cfg-{port}.yaml"
    cfg.write_text(
        json.dumps(
            {
                "data_dir": str(tmp / f"data-{port}"),
                "local_models": [],
                "embedders": [],
                "deployments": [{"model": "bench", "base_url": f"http://127.0.0.1:{mock_port}/v1"}],
                "tenancy": tenancy,
            }
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "modelyard.cli", "serve", "--config", str(cfg), "--port", str(port)]
    return subprocess.Popen([*cmd, "--log-level", "warning"], env=env), port, cfg


def _tenant_key(cfg: Path) -> str:
    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "modelyard.cli", *args, "--config", str(cfg)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        return out.stdout

    cli("keys", "create", "--admin")
    limits = {"rpm": 10**7, "tpm": 10**10, "concurrency": 10**5}
    cli(
        "tenants",
        "create",
        "bench",
        "-m",
        "bench",
        "--limits",
        json.dumps(limits),
        "--budget",
        json.dumps({"tokens": 10**13}),
    )
    return cli("keys", "create", "--tenant", "bench").splitlines()[0]


async def run(
    concurrencies: list[int], duration_s: float, streams: list[bool], redis: str | None
) -> list[dict[str, Any]]:
    mock_port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-tenancy-"))
    mock = subprocess.Popen([sys.executable, "-P", str(HERE / "mock_upstream.py"), "--port", str(mock_port)])
    on_cfg: dict[str, Any] = {"auth": "required", "secret": SECRET}
    if redis:
        on_cfg |= {"redis_url": redis, "redis_prefix": f"modelyard-bench:{secrets.token_hex(4)}:"}
    results: dict[str, dict[tuple[bool, int], dict[str, float]]] = {}
    try:
        await _wait(f"http://127.0.0.1:{mock_port}/stats")
        for label, tenancy in (("off", {"enabled": False}), ("on", on_cfg)):
            proc, port, cfg = _serve(tmp, mock_port, tenancy)
            try:
                await _wait(f"http://127.0.0.1:{port}/ready")
                key = _tenant_key(cfg) if label == "on" else None
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                results[label] = {
                    (s, c): await _load(url, key=key, stream=s, concurrency=c, duration_s=duration_s)
                    for s in streams
                    for c in concurrencies
                }
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        mock.terminate()
        mock.wait(timeout=20)
    rows = []
    for (s, c), off in results["off"].items():
        on = results["on"][(s, c)]
        rows.append(
            {
                "stream": s,
                "concurrency": c,
                "off_p50_ms": round(off["p50"], 3),
                "on_p50_ms": round(on["p50"], 3),
                "added_p50_ms": round(on["p50"] - off["p50"], 3),
                "off_p99_ms": round(off["p99"], 3),
                "on_p99_ms": round(on["p99"], 3),
                "added_p99_ms": round(on["p99"] - off["p99"], 3),
                "off_rps": round(off["rps"], 1),
                "on_rps": round(on["rps"], 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure what tenancy adds to the gateway's latency.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--stream", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--redis", default=None, help="count limits in this Redis instead of in process")
    args = parser.parse_args()
    streams = {"both": [False, True], "yes": [True], "no": [False]}[args.stream]
    rows = asyncio.run(run(args.concurrency, args.duration, streams, args.redis))
    if args.json:
        print(json.dumps(rows))
        return
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
