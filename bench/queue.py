"""Queue benchmark: what the Redis Streams path adds per request, and throughput with 1 vs 2 workers.

Latency (one process, one engine, requests one at a time, interleaved so that noise hits every
path alike): each request runs (a) straight on the local backend (the embedded default), (b)
through the in-process queue and a worker, (c) through Redis Streams and a worker. Reported:
p50/p99 of end-to-end and first-payload latency per path and of the per-request difference
(queued minus direct).

Throughput (real processes): ``modelyard serve`` with ``queue.backend: redis`` plus 1, then 2
``modelyard worker`` processes (one torch thread each); ``--concurrency`` clients stream
``--throughput-requests`` chat requests through the HTTP API. Everything shares this machine's
cores with the load generator, so the ratio is a lower bound on what separate machines give.

    python -m bench.queue                                 # SmolLM2 (packaged), JSON on stdout
    python -m bench.queue --source /path/to/hf-folder --requests 20 --throughput-requests 32
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python -m bench.queue`, this folder is sys.path[0] and this file would shadow the
# standard library's `queue` module for everything imported after it (torch, asyncio helpers).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

DEFAULT_SOURCE = "packaged:smollm2-135m-instruct"


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(len(s) * p))] * 1000, 3)


def _summary(xs: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _pct(xs, 0.5),
        "p99_ms": _pct(xs, 0.99),
        "mean_ms": round(statistics.fmean(xs) * 1000, 3),
    }


def _settings(source: str, data: Path, **queue: Any) -> Any:
    from modelyard.settings import LocalModelSettings, Settings

    return Settings(
        data_dir=data,
        model_cache_dir=Path.home() / ".cache" / "modelyard" / "models",
        local_models=[LocalModelSettings(name="bench", source=source)],
        embedders=[],
        engine={"max_model_len": 1024, "num_threads": 1},
        queue=queue,
    )


async def latency(source: str, redis_url: str, requests: int, max_tokens: int) -> dict[str, Any]:
    from modelyard.gateway.backends.base import BackendRequest, Endpoint
    from modelyard.gateway.backends.local import LocalBackend
    from modelyard.gateway.backends.queued import QueuedBackend
    from modelyard.protocol.openai import ChatCompletionRequest
    from modelyard.queue.memory import InProcessQueue
    from modelyard.queue.redis_streams import RedisStreamsQueue
    from modelyard.queue.worker import Worker

    settings = _settings(source, Path(tempfile.mkdtemp()))
    local = LocalBackend(settings.local_models[0], settings)
    await local.start()
    memory = InProcessQueue()
    redis_q = RedisStreamsQueue(redis_url, key_prefix=f"bench-{uuid.uuid4().hex[:8]}")
    workers = [
        Worker(q, {"bench": local}, settings.queue, worker_id=f"bench-{i}")  # type: ignore[arg-type]
        for i, q in enumerate((memory, redis_q))
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    paths = {
        "direct": local,
        "memory_queue": QueuedBackend("bench", memory, settings.queue),
        "redis_queue": QueuedBackend("bench", redis_q, settings.queue),
    }
    e2e: dict[str, list[float]] = {k: [] for k in paths}
    first: dict[str, list[float]] = {k: [] for k in paths}
    try:
        for i in range(requests + 2):  # the first two rounds warm up
            for name, backend in paths.items():
                body = {
                    "model": "bench",
                    "messages": [{"role": "user", "content": f"Tell me a fact about the number {i}."}],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "user": f"{name}-{i}",  # a cold prefix cache on every path
                }
                req = BackendRequest(
                    Endpoint.CHAT, body, ChatCompletionRequest.model_validate(body), f"{name}-{i}", "bench"
                )
                t0 = time.perf_counter()
                t_first = None
                async for _ in backend.stream(req):
                    t_first = t_first or time.perf_counter()
                if i >= 2:
                    e2e[name].append(time.perf_counter() - t0)
                    first[name].append((t_first or t0) - t0)
    finally:
        for w in workers:
            w.drain()
        await asyncio.gather(*tasks)
        await redis_q.purge()
        await redis_q.close()
        await local.close()
    out: dict[str, Any] = {"requests": requests, "max_tokens": max_tokens}
    for name in paths:
        out[name] = {"e2e": _summary(e2e[name]), "first_payload": _summary(first[name])}
    for name in ("memory_queue", "redis_queue"):
        out[f"{name}_added"] = {
            "e2e": _summary([q - d for q, d in zip(e2e[name], e2e["direct"], strict=True)]),
            "first_payload": _summary([q - d for q, d in zip(first[name], first["direct"], strict=True)]),
        }
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout_s}s")
        time.sleep(0.1)


async def _drive(url: str, n: int, concurrency: int, max_tokens: int) -> tuple[float, int]:
    sem = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal tokens
        body = {
            "model": "bench",
            "messages": [{"role": "user", "content": f"Write a short line about item {i}."}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with sem, client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"usage":{' in line:
                    tokens += json.loads(line[6:])["usage"]["completion_tokens"]

    async with httpx.AsyncClient(timeout=300) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(n)))
        return time.perf_counter() - t0, tokens


def throughput(
    source: str, redis_url: str, worker_counts: list[int], n: int, concurrency: int, max_tokens: int
) -> list[dict[str, Any]]:
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="modelyard-queue-bench-"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = _settings(source, tmp / "data", backend="redis", redis_url=redis_url, key_prefix=prefix)
    (tmp / "c.yaml").write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    port = _free_port()
    cli = [sys.executable, "-m", "modelyard.cli"]
    log = (tmp / "log").open("ab")
    gateway = subprocess.Popen(
        [*cli, "serve", "-c", str(tmp / "c.yaml"), "--port", str(port), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    results = []
    try:
        _wait(lambda: _ok(f"{url}/ready"), "the gateway")
        for count in worker_counts:
            procs = []
            for i in range(count):
                ready = tmp / f"w{count}-{i}.ready"
                procs.append(subprocess.Popen(
                    [*cli, "worker", "-c", str(tmp / "c.yaml"), "--worker-id", f"w{count}-{i}",
                     "--ready-file", str(ready), "--log-level", "warning"],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
                _wait(ready.exists, f"worker {i}")
            asyncio.run(_drive(url, concurrency, concurrency, 4))  # warm-up
            elapsed, tokens = asyncio.run(_drive(url, n, concurrency, max_tokens))
            results.append(
                {
                    "workers": count,
                    "requests": n,
                    "concurrency": concurrency,
                    "seconds": round(elapsed, 3),
                    "requests_per_s": round(n / elapsed, 3),
                    "completion_tokens_per_s": round(tokens / elapsed, 1),
                }
            )
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=120)
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
        import redis

        r = redis.Redis.from_url(redis_url)
        keys = list(r.scan_iter(match=f"{prefix}:*"))
        if keys:
            r.delete(*keys)
    return results


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--source", default=DEFAULT_SOURCE, help="model source (packaged:<name>, GGUF, HF folder)"
    )
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--requests", type=int, default=40, help="latency: requests per path")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--throughput-requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report: dict[str, Any] = {
        "source": args.source,
        "cpus": os.cpu_count(),
        "latency": asyncio.run(latency(args.source, args.redis_url, args.requests, args.max_tokens)),
    }
    if not args.skip_throughput:
        report["throughput"] = throughput(
            args.source,
            args.redis_url,
            args.workers,
            args.throughput_requests,
            args.concurrency,
            args.max_tokens,
        )
        base = report["throughput"][0]["requests_per_s"]
        report["throughput_ratio_vs_first"] = [
            round(t["requests_per_s"] / base, 3) for t in report["throughput"]
        ]
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
