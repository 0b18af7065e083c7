"""CPU cost of observing one request (metrics + span + request-log record), in process, no network.

Drives :class:`modelyard.monitoring.observer.Observation` through a streamed request of ``--chunks``
content chunks (the payloads a backend yields) and reports microseconds per request for each
configuration. The gateway benchmark (``bench/gateway.py``) measures the end-to-end effect; this one
isolates the observer from a noisy machine.

    python -m bench.observer_cost --requests 3000 --chunks 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from modelyard.gateway.pipeline import Gateway, StaticResolver
from modelyard.gateway.router import Router
from modelyard.monitoring.monitor import Monitor
from modelyard.settings import Settings


def _chunk(i: int, text: str | None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    return orjson.dumps(
        {
            "id": "chatcmpl-x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


async def _measure(name: str, monitoring: dict[str, Any], n: int, chunks: int, tmp: Path) -> dict[str, Any]:
    settings = Settings(local_models=[], embedders=[], data_dir=tmp / name, monitoring=monitoring)
    router = Router(settings.router.policy, settings.circuit_breaker, ewma_alpha=0.2, fallbacks={})
    monitor = Monitor(settings, Gateway(router, StaticResolver(router), settings.limits))
    if settings.monitoring.request_log.enabled:
        from modelyard.store.db import create_db_engine, migrate

        engine = create_db_engine(settings.resolved_database_url)
        migrate(engine)
        engine.dispose()
    monitor.start()
    payloads = [_chunk(0, "")] + [_chunk(i, f" w{i}") for i in range(chunks)] + [_chunk(0, None, "stop")]
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there, my mail is a@b.io"}]}
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for i in range(n):
        obs = monitor.observe(
            endpoint="chat/completions",
            model_ref="m",
            request_id=f"r{i}",
            stream=True,
            body=body,
            state={},
            headers={},
        )
        for p in payloads:
            obs.chunk(p)
        obs.finish_stream()
        if i % 64 == 0:
            await asyncio.sleep(0)  # let the request-log writer run as it would between requests
    wall = time.perf_counter() - t0
    await monitor.stop()  # flushes spans and the request log: their cost counts too
    cpu = time.process_time() - cpu0
    return {
        "config": name,
        "us_per_request_hot_path": round(wall / n * 1e6, 1),
        "us_per_request_cpu_total": round(cpu / n * 1e6, 1),
    }


async def main_async(n: int, chunks: int) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-obs-bench-"))
    configs = {
        "off": {"enabled": False},
        "metrics": {"tracing": {"exporter": "none"}, "request_log": {"enabled": False}},
        "metrics+log": {"tracing": {"exporter": "none"}},
        "metrics+log+trace (default: event every 16th chunk)": {
            "tracing": {"exporter": "file", "file_path": str(tmp / "s1.jsonl")}
        },
        "metrics+log+trace (event every chunk)": {
            "tracing": {"exporter": "file", "file_path": str(tmp / "s3.jsonl"), "token_events_every": 1}
        },
        "metrics+log+trace (no token events, no phase spans)": {
            "tracing": {
                "exporter": "file",
                "file_path": str(tmp / "s4.jsonl"),
                "token_events_every": 0,
                "phase_spans": False,
            }
        },
        "metrics+log+trace (no token events)": {
            "tracing": {"exporter": "file", "file_path": str(tmp / "s2.jsonl"), "token_events_every": 0}
        },
    }
    return [await _measure(name, cfg, n, chunks, tmp) for name, cfg in configs.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--chunks", type=int, default=16)
    args = parser.parse_args()
    for row in asyncio.run(main_async(args.requests, args.chunks)):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
