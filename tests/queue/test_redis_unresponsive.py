"""The queue against a Redis that stops answering (SIGSTOP: the socket stays open, nothing replies,
as on a half-open connection) and against a dead one (killed: connections are refused).

Runs on a private ``redis-server`` on a free port; the finalizer always resumes and stops it. With
``redis_socket_timeout_s=0.4`` and ``redis_retries=1`` one queue operation fails within
``0.4 * 2 = 0.8`` s; the assertions allow a loaded CI machine some slack on top of that bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from queue_helpers import Cluster, tiny_settings, unique_prefix

from modelyard.errors import OverCapacity
from modelyard.gateway.backends.base import BackendRequest, Endpoint
from modelyard.gateway.backends.local import LocalBackend
from modelyard.gateway.backends.queued import CLOSE_BOUND_S, QueuedBackend
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.queue.factory import redis_queue
from modelyard.queue.worker import STOP_BOUND_S, Worker
from modelyard.settings import Settings
from servers import finish_tasks, free_port

pytestmark = pytest.mark.redis

SOCKET_TIMEOUT_S = 0.4
RETRIES = 1
OP_BOUND_S = SOCKET_TIMEOUT_S * (RETRIES + 1)  # RedisStreamsQueue.op_timeout_s
SLACK_S = 2.0  # scheduling slack on a loaded CI machine (the bound itself is OP_BOUND_S)


class PausableRedis:
    """A private ``redis-server``: ``pause`` (SIGSTOP), ``resume`` (SIGCONT), ``kill``."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--save", "", "--appendonly", "no", "--daemonize", "no"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the private redis-server did not start"
                time.sleep(0.05)

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        self.resume()
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        self.resume()  # a stopped process does not act on SIGTERM
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PausableRedis]:
    r = PausableRedis(tmp_path)
    try:
        yield r
    finally:
        r.close()


def queue_settings(tiny_dir: Path, tmp: Path, url: str) -> Settings:
    return tiny_settings(
        tiny_dir,
        tmp,
        backend="redis",
        redis_url=url,
        key_prefix=unique_prefix(),
        heartbeat_s=0.1,
        claim_idle_s=5.0,
        worker_ttl_s=5.0,
        redis_socket_timeout_s=SOCKET_TIMEOUT_S,
        redis_connect_timeout_s=SOCKET_TIMEOUT_S,
        redis_retries=RETRIES,
    )


def chat(content: str) -> BackendRequest:
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 3}
    parsed = ChatCompletionRequest.model_validate(body)
    return BackendRequest(Endpoint.CHAT, body, parsed, uuid.uuid4().hex, "tiny")


@pytest.fixture
async def local(tiny_dir: Path, tmp_path: Path) -> AsyncIterator[LocalBackend]:
    s = tiny_settings(tiny_dir, tmp_path)
    backend = LocalBackend(s.local_models[0], s)
    await backend.start()
    yield backend
    await backend.close()


async def timed(coro: object) -> tuple[float, BaseException | None]:
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(30):  # fail, never stall
            await coro  # type: ignore[misc]
    except Exception as exc:
        return time.monotonic() - t0, exc
    return time.monotonic() - t0, None


async def test_paused_redis_fails_fast_and_the_worker_recovers_after_sigcont(
    private_redis: PausableRedis,
    tiny_dir: Path,
    tmp_path: Path,
    local: LocalBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = queue_settings(tiny_dir, tmp_path, private_redis.url)
    gateway = QueuedBackend("tiny", redis_queue(settings.queue), settings.queue)
    await gateway.start()
    worker = Worker(
        redis_queue(settings.queue), {"tiny": local}, settings.queue, worker_id="w1", drain_timeout_s=2
    )
    run = asyncio.create_task(worker.run())
    try:
        assert served(await gateway.complete(chat("before")))  # served through the queue

        private_redis.pause()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="modelyard.worker"):
            took, exc = await timed(gateway.complete(chat("while paused")))
            assert isinstance(exc, OverCapacity) and exc.status_code == 503, exc
            assert "unavailable" in exc.message and took < OP_BOUND_S + SLACK_S, took
            await asyncio.sleep(OP_BOUND_S * 3 + SLACK_S)
            # the take loop did not hang on the silent socket: its takes time out and are retried
            takes = [r for r in caplog.records if r.getMessage().startswith("take failed")]
            assert len(takes) >= 2, [r.getMessage() for r in caplog.records]
        assert not run.done()

        private_redis.resume()
        t0 = time.monotonic()
        async with asyncio.timeout(30):
            assert served(await gateway.complete(chat("after")))
        assert time.monotonic() - t0 < 10  # the take loop's backoff is 2 s at most
        # 2 or 3: the paused Redis may still run the XADD of the submit that timed out once it
        # resumes (the bytes were in its socket buffer); that job is served to nobody (docs/scale-out.md)
        assert worker.served in (2, 3)

        # shutting down while Redis is paused is bounded too
        private_redis.pause()
        took, exc = await timed(gateway.close())
        assert exc is None and took < CLOSE_BOUND_S + SOCKET_TIMEOUT_S + 1 + SLACK_S, took
        worker.drain()
        t0 = time.monotonic()
        await finish_tasks([run], 2 + STOP_BOUND_S + 2 * OP_BOUND_S + 10, "draining the worker")
        assert time.monotonic() - t0 < 2 + STOP_BOUND_S + 2 * OP_BOUND_S + SLACK_S
    finally:
        private_redis.resume()
        worker.drain()
        await finish_tasks([run], 30, "draining the worker")
        await gateway.close()
        await worker.queue.close()  # type: ignore[attr-defined]


async def test_killed_redis_answers_503_fast_then_recovers_when_it_is_back(
    private_redis: PausableRedis, tiny_dir: Path, tmp_path: Path
) -> None:
    settings = queue_settings(tiny_dir, tmp_path, private_redis.url)
    queue = redis_queue(settings.queue)
    gateway = QueuedBackend("tiny", queue, settings.queue)
    try:
        assert await queue.depth("tiny") == 0
        private_redis.kill()
        took, exc = await timed(gateway.complete(chat("redis is dead")))
        assert isinstance(exc, OverCapacity) and took < OP_BOUND_S + SLACK_S, (exc, took)
        took, exc = await timed(queue.take("w1", ["tiny"], 1, block_s=0.2))
        assert isinstance(exc, redis.RedisError | OSError) and took < OP_BOUND_S + SLACK_S, (exc, took)
    finally:
        await gateway.close()


def test_gateway_answers_503_over_capacity_while_redis_is_paused(
    private_redis: PausableRedis, tiny_dir: Path, tmp_path: Path
) -> None:
    """Through HTTP: ``modelyard serve`` with the queue on a paused Redis answers a chat request
    with 503 ``over_capacity`` within the operation bound, and keeps answering ``/health``."""
    cluster = Cluster(
        tmp_path,
        tiny_dir,
        workers=0,
        redis_url=private_redis.url,
        redis_socket_timeout_s=SOCKET_TIMEOUT_S,
        redis_connect_timeout_s=SOCKET_TIMEOUT_S,
        redis_retries=RETRIES,
    )
    try:
        private_redis.pause()
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        t0 = time.monotonic()
        r = httpx.post(f"{cluster.gateway.url}/v1/chat/completions", json=body, timeout=30)
        took = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "over_capacity", r.text
        assert took < OP_BOUND_S + SLACK_S, took
        assert httpx.get(f"{cluster.gateway.url}/health", timeout=10).status_code == 200
    finally:
        private_redis.resume()
        cluster.close()


def served(body: bytes) -> int:
    """The completion tokens of a chat completion the worker produced (the tiny model's random
    weights may decode its few tokens to an empty string, so the content itself proves nothing)."""
    import orjson

    doc = orjson.loads(body)
    assert doc["object"] == "chat.completion" and doc["choices"][0]["message"]["role"] == "assistant", doc
    return int(doc["usage"]["completion_tokens"])
