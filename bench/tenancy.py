"""Tenancy overhead: ``bench/gateway.py``'s load against ``modelyard serve`` under several tenancy modes.

Modes (``--modes``), each a fresh server on the same mock upstream, measured in one run so ratios are
comparable on a noisy machine:

- ``off``: ``tenancy.enabled: false`` (no auth, no limits, no metering): the baseline.
- ``meter``: tenancy on, anonymous callers (no key, no rules): metering alone.
- ``auth``: a tenant key (HMAC lookup in the metadata store on every request, principal cache off)
  of a tenant without limits: auth + metering.
- ``full``: a tenant with RPM/TPM/concurrency limits and a token budget too high to refuse (every rule
  is still evaluated, in process or in Redis with ``--redis``), principal cache off.
- ``full+cache``: ``full`` with the principal cache on (the default configuration).
- ``auth+cache``: ``auth`` with the cache on.

The ledger is SQLite unless ``--database-url`` names a PostgreSQL database (each mode uses its own
tenant there). Ratios are against ``off`` (``rps_x``: throughput, ``p50_x`` / ``p99_x``: latency).

    python -m bench.tenancy --duration 3 --concurrency 1 16
    python -m bench.tenancy --redis redis://127.0.0.1:6379/0 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway import _free_port, _load, _wait

HERE = Path(__file__).resolve().parent

SECRET = secrets.token_urlsafe(48)


BENCH_PREFIX = "modelyard-bench:"


def _drop_keys(url: str, prefix: str) -> None:
    """Delete this run's Redis keys (counters expire, the auth epoch does not)."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


MODES = ("off", "meter", "auth", "auth+cache", "full", "full+cache")


def _serve(
    tmp: Path, mock_port: int, tenancy: dict[str, Any], database_url: str | None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = _free_port()
    cfg = tmp / f"cfg-{port}.yaml"
    config: dict[str, Any] = {
        "data_dir": str(tmp / f"data-{port}"),
        "local_models": [],
        "embedders": [],
        "deployments": [{"model": "bench", "base_url": f"http://127.0.0.1:{mock_port}/v1"}],
        "tenancy": tenancy,
    }
    if database_url:
        config["database_url"] = database_url
    cfg.write_text(json.dumps(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "modelyard.cli", "serve", "--config", str(cfg), "--port", str(port)]
    return subprocess.Popen([*cmd, "--log-level", "warning"], env=env), port, cfg


def _tenant_key(cfg: Path, tenant: str, limited: bool) -> str:
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
    extra: list[str] = []
    if limited:
        limits = {"rpm": 10**7, "tpm": 10**10, "concurrency": 10**5}
        extra = ["--limits", json.dumps(limits), "--budget", json.dumps({"tokens": 10**13})]
    cli("tenants", "create", tenant, "-m", "bench", *extra)
    return cli("keys", "create", "--tenant", tenant).splitlines()[0]


def _tenancy_cfg(mode: str, redis: str | None) -> dict[str, Any]:
    if mode == "off":
        return {"enabled": False}
    if mode == "meter":
        return {"auth": "anonymous", "secret": SECRET}
    cfg: dict[str, Any] = {"auth": "required", "secret": SECRET}
    if not mode.endswith("+cache"):
        cfg["auth_cache_size"] = 0
    if redis:
        cfg |= {"redis_url": redis, "redis_prefix": f"{BENCH_PREFIX}{secrets.token_hex(4)}:"}
    return cfg


async def run(
    concurrencies: list[int],
    duration_s: float,
    streams: list[bool],
    redis: str | None,
    modes: list[str],
    database_url: str | None = None,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    """Every mode's server runs at once; each round loads them in turn (the median round is reported),
    so a burst of noise on the machine hits every mode alike."""
    mock_port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-tenancy-"))
    mock = subprocess.Popen([sys.executable, "-P", str(HERE / "mock_upstream.py"), "--port", str(mock_port)])
    run_id = secrets.token_hex(3)
    modes = ["off", *(m for m in modes if m != "off")]
    samples: dict[tuple[str, bool, int], list[dict[str, float]]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    prefixes: list[str] = []
    try:
        await _wait(f"http://127.0.0.1:{mock_port}/stats")
        targets: dict[str, tuple[str, str | None]] = {}
        for mode in modes:
            tenancy = _tenancy_cfg(mode, redis)
            if "redis_prefix" in tenancy:
                prefixes.append(tenancy["redis_prefix"])
            proc, port, cfg = _serve(tmp, mock_port, tenancy, database_url)
            procs.append(proc)
            await _wait(f"http://127.0.0.1:{port}/ready")
            key = None
            if mode not in ("off", "meter"):
                key = _tenant_key(cfg, f"bench-{run_id}-{mode.replace('+', '-')}", mode.startswith("full"))
            targets[mode] = (f"http://127.0.0.1:{port}/v1/chat/completions", key)
        for _ in range(rounds):
            for s in streams:
                for c in concurrencies:
                    for mode, (url, key) in targets.items():
                        r = await _load(url, key=key, stream=s, concurrency=c, duration_s=duration_s)
                        samples.setdefault((mode, s, c), []).append(r)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        mock.terminate()
        mock.wait(timeout=20)
        for prefix in prefixes:
            _drop_keys(str(redis), prefix)
    med = {
        k: {f: statistics.median(x[f] for x in v) for f in ("rps", "p50", "p99")} for k, v in samples.items()
    }
    rows = []
    for (mode, s, c), r in med.items():
        off = med[("off", s, c)]
        rows.append(
            {
                "mode": mode,
                "stream": s,
                "concurrency": c,
                "rps": round(r["rps"], 1),
                "p50_ms": round(r["p50"], 3),
                "p99_ms": round(r["p99"], 3),
                "rps_x": round(r["rps"] / off["rps"], 3),
                "p50_x": round(r["p50"] / off["p50"], 3),
                "p99_x": round(r["p99"] / off["p99"], 3),
            }
        )
    rows.sort(key=lambda r: (str(r["stream"]), str(r["concurrency"]).zfill(6), modes.index(str(r["mode"]))))
    return rows


async def micro(database_url: str | None, redis: str | None, n: int) -> list[dict[str, Any]]:
    """Per-request cost of each tenancy step, in process (no HTTP, no load generator): median and p99
    microseconds of ``n`` calls each. Robust on a busy machine where end-to-end req/s is not."""
    import time

    from modelyard.protocol.openai import ChatCompletionRequest
    from modelyard.settings import Settings
    from modelyard.tenancy.service import start_tenancy

    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-micro-"))
    tenancy: dict[str, Any] = {"secret": SECRET}
    if redis:
        tenancy |= {"redis_url": redis, "redis_prefix": f"{BENCH_PREFIX}{secrets.token_hex(4)}:"}
    settings = Settings(
        data_dir=tmp,
        local_models=[],
        embedders=[],
        database_url=database_url or f"sqlite:///{tmp / 'db.sqlite'}",
        tenancy=tenancy,
    )
    t = await start_tenancy(settings)
    tenant = f"micro-{secrets.token_hex(3)}"
    t.store.create_tenant(
        tenant,
        models=["bench"],
        limits={"rpm": 10**7, "tpm": 10**10, "concurrency": 10**5},
        budget={"tokens": 10**13},
        actor="bench",
    )
    _, key = t.store.create_key(tenant, ["inference"], actor="bench")
    parsed = ChatCompletionRequest.model_validate(
        {"model": "bench", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    )
    usage = {"prompt_tokens": 10, "completion_tokens": 16}
    cache = t.auth_cache
    principal = await t.authenticate(key)
    tickets = []

    async def auth_store() -> None:
        t.auth_cache = None
        await t.authenticate(key)
        t.auth_cache = cache

    async def auth_cached() -> None:
        await t.authenticate(key)

    async def epoch() -> None:
        if t.epoch is not None:
            await t.epoch.read()

    async def admit() -> None:
        tickets.append(await t.admit(principal, "bench", "chat/completions", parsed, "r"))

    async def settle() -> None:
        await t.settle(tickets.pop(), usage, "ok")

    steps = [("auth (store query)", auth_store), ("auth (cache)", auth_cached), ("epoch read", epoch)]
    steps += [("admit (limits+budget)", admit), ("settle (limits+meter)", settle)]
    if cache is None:
        steps = [st for st in steps if st[0] not in ("auth (cache)", "epoch read")]
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    try:
        for _ in range(n):
            for name, fn in steps:
                t0 = time.perf_counter()
                await fn()
                times[name].append((time.perf_counter() - t0) * 1e6)
    finally:
        await t.close()
        if redis:
            _drop_keys(redis, tenancy["redis_prefix"])
    rows = []
    for name, ts in times.items():
        ts.sort()
        rows.append(
            {"step": name, "p50_us": round(ts[len(ts) // 2], 1), "p99_us": round(ts[int(len(ts) * 0.99)], 1)}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure what tenancy adds to the gateway's latency.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--stream", choices=["both", "yes", "no"], default="both")
    parser.add_argument("--redis", default=None, help="count limits in this Redis instead of in process")
    parser.add_argument("--database-url", default=None, help="metadata store (default: SQLite per server)")
    parser.add_argument("--rounds", type=int, default=1, help="load every mode this many times (median)")
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=["off", "full", "full+cache"], help="see the module doc"
    )
    parser.add_argument("--micro", type=int, default=0, help="instead: time each step N times in process")
    args = parser.parse_args()
    if args.micro:
        micro_rows = asyncio.run(micro(args.database_url, args.redis, args.micro))
        print(json.dumps(micro_rows) if args.json else "\n".join(str(r) for r in micro_rows))
        return
    streams = {"both": [False, True], "yes": [True], "no": [False]}[args.stream]
    rows = asyncio.run(
        run(args.concurrency, args.duration, streams, args.redis, args.modes, args.database_url, args.rounds)
    )
    if args.json:
        print(json.dumps(rows))
        return
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
