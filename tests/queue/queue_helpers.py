"""Helpers shared by the queue tests (importable as ``queue_helpers``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis
import yaml

from modelyard.queue.redis_streams import RedisStreamsQueue
from modelyard.settings import LocalModelSettings, QueueSettings, Settings
from servers import RemoteServer, free_port, stop_process

REDIS_URL = "redis://127.0.0.1:6379/0"


def unique_prefix() -> str:
    return f"mytest-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def redis_test_queue(url: str = REDIS_URL, **kw: object) -> AsyncIterator[RedisStreamsQueue]:
    """A queue under a unique key prefix, purged afterwards; fails (never skips) when Redis is down."""
    q = RedisStreamsQueue(url, key_prefix=unique_prefix(), worker_ttl_s=1.0, **kw)  # type: ignore[arg-type]
    await q._redis.ping()
    try:
        yield q
    finally:
        await q.purge()
        await q.close()


def tiny_settings(tiny_dir: Path, tmp: Path, **queue: object) -> Settings:
    return Settings(
        data_dir=tmp,
        model_cache_dir=tmp / "models",
        local_models=[LocalModelSettings(name="tiny", source=str(tiny_dir))],
        embedders=[],
        engine={"max_model_len": 256, "num_threads": 1, "dtype": "float32"},
        queue=QueueSettings(**queue),  # type: ignore[arg-type]
    )


class Cluster:
    """``modelyard serve`` with ``queue.backend: redis`` plus ``modelyard worker`` subprocesses."""

    def __init__(
        self,
        tmp: Path,
        tiny_dir: Path | None,
        *,
        workers: int,
        redis_url: str = REDIS_URL,
        settings: dict[str, Any] | None = None,
        **queue: Any,
    ) -> None:
        """``tiny_dir`` serves the tiny model as ``tiny``; ``settings`` overrides top-level settings."""
        self.tmp = tmp
        self.prefix = unique_prefix()
        self.redis_url = redis_url
        self.config: dict[str, Any] = {
            "data_dir": str(tmp / "data"),
            "model_cache_dir": str(tmp / "models"),
            "local_models": [{"name": "tiny", "source": str(tiny_dir)}],
            "embedders": [],
            "engine": {"max_model_len": 256, "num_threads": 1, "dtype": "float32"},
            "drain_timeout_s": 20,
            "queue": {
                "backend": "redis",
                "redis_url": redis_url,
                "key_prefix": self.prefix,
                "heartbeat_s": 0.3,
                "claim_idle_s": 1.5,
                "worker_ttl_s": 1.5,
                "reply_timeout_s": 10,
                "queue_timeout_s": 30,
                **queue,
            },
            **(settings or {}),
        }
        self.config_path = tmp / "cluster.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.http_ports: dict[str, int] = {}
        for i in range(workers):
            self.start_worker(f"w{i}")
        (tmp / "gateway").mkdir(exist_ok=True)
        self.gateway = RemoteServer(tmp / "gateway", self.config, ready_timeout_s=120)
        for wid in self.workers:
            self.wait_ready(wid)

    def start_worker(self, wid: str) -> None:
        ready = self.tmp / f"{wid}.ready"
        ready.unlink(missing_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("MODELYARD_CONFIG", None)
        self.workers[wid] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard.cli",
                "worker",
                "--config",
                str(self.config_path),
                "--worker-id",
                wid,
                "--ready-file",
                str(ready),
                "--log-level",
                "info",
                "--http-port",
                str(self.http_ports.setdefault(wid, free_port())),
            ],
            stdout=(self.tmp / f"{wid}.log").open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.tmp,
        )

    def wait_ready(self, wid: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.tmp / f"{wid}.ready").exists():
            proc = self.workers[wid]
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {wid} did not start:\n{self.log(wid)[-3000:]}")
            time.sleep(0.1)

    def worker_url(self, wid: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[wid]}"

    def log(self, wid: str) -> str:
        return (self.tmp / f"{wid}.log").read_text(errors="replace")

    def reports(self) -> dict[str, dict[str, Any]]:
        """Live worker reports straight from Redis."""
        r = redis.Redis.from_url(self.redis_url)
        try:
            out = {}
            for wid in r.smembers(f"{self.prefix}:workers"):
                raw = r.get(f"{self.prefix}:worker:{wid.decode()}")
                if raw is not None:
                    out[wid.decode()] = json.loads(raw)
            return out
        finally:
            r.close()

    def close(self) -> None:
        self.gateway.close()
        for proc in self.workers.values():
            stop_process(proc)
        try:
            r = redis.Redis.from_url(self.redis_url)
            keys = list(r.scan_iter(match=f"{self.prefix}:*", count=1000))
            if keys:
                r.delete(*keys)
            r.close()
        except redis.RedisError:
            pass
