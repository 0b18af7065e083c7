"""Periodic tasks under a lease, on PostgreSQL (advisory lock) and Redis (SET NX PX + fencing token):
with two runners in two processes exactly one runs the task each period, and when the holder is
killed the other takes over. Plus the in-process lease, ``run_once`` and the lease choice."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from databases import POSTGRES_URL, fresh_database_url
from modelyard.errors import ConfigError
from modelyard.jobs.leases import LocalLease, PostgresLease, RedisLease, advisory_key
from modelyard.jobs.periodic import MIN_LEASE_TTL_S, PeriodicRunner, PeriodicTask, lease_for
from modelyard.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
HOLDER = Path(__file__).with_name("lease_holder.py")
SRC = Path(__file__).resolve().parents[2] / "src"
EVERY_S = 0.2
SA_POSTGRES = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://")


@pytest.fixture
def task_name() -> Iterator[str]:
    name = f"modelyard-test-{secrets.token_hex(6)}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def target(kind: str) -> str:
    return SA_POSTGRES if kind == "postgres" else REDIS_URL


def runs(out: Path) -> list[tuple[int, int]]:
    if not out.exists():
        return []
    return [(int(p), int(t)) for p, t in (line.split() for line in out.read_text().splitlines() if line)]


@pytest.mark.parametrize(
    "kind",
    [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("redis", marks=pytest.mark.redis)],
)
async def test_one_holder_runs_each_period_and_the_other_takes_over(
    kind: str, task_name: str, tmp_path: Path
) -> None:
    out = tmp_path / "runs.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, str(HOLDER), kind, target(kind), task_name, str(EVERY_S), str(out)], env=env
    )
    try:
        deadline = time.monotonic() + 20
        while not runs(out):
            assert holder.poll() is None and time.monotonic() < deadline, "the holder never ran the task"
            await asyncio.sleep(0.05)
        here: list[int] = []

        async def record(token: int) -> None:
            here.append(token)

        lease = (
            PostgresLease(SA_POSTGRES) if kind == "postgres" else RedisLease(REDIS_URL, key_prefix=task_name)
        )
        runner = PeriodicRunner([PeriodicTask(task_name, EVERY_S, record)], lease)
        runner.start()
        before = len(runs(out))
        await asyncio.sleep(2.0)
        during = len(runs(out)) - before
        assert here == [], "the second runner ran the task while the first held the lease"
        # about one run per period (2.0 s / 0.2 s = 10), never a burst
        assert 6 <= during <= 11, during
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed_at = time.monotonic()
        old_tokens = {t for _, t in runs(out)}
        while not here:
            assert time.monotonic() - killed_at < MIN_LEASE_TTL_S + 5, "nobody took over the lease"
            await asyncio.sleep(0.05)
        took = time.monotonic() - killed_at
        if kind == "postgres":
            assert took < 2.0, took  # the lock goes with the dead connection
        else:
            assert took <= MIN_LEASE_TTL_S + 1.0, took
            assert min(here) > max(old_tokens), (here, old_tokens)  # fencing tokens only grow
        n = len(here)
        await asyncio.sleep(1.0)
        assert 3 <= len(here) - n <= 6
        await runner.stop()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


@pytest.mark.postgres
async def test_postgres_lease_is_exclusive_across_connections(task_name: str) -> None:
    a, b = PostgresLease(SA_POSTGRES), PostgresLease(SA_POSTGRES)
    try:
        token = await a.acquire(task_name, 1)
        assert token is not None
        assert await a.acquire(task_name, 1) == token  # the holder keeps it
        assert await b.acquire(task_name, 1) is None
        assert await a.renew(task_name, token, 1)
        await a.release(task_name, token)
        assert await b.acquire(task_name, 1) is not None
        assert await a.acquire(task_name, 1) is None
    finally:
        await a.close()
        await b.close()
    assert advisory_key(task_name) == advisory_key(task_name) and -(2**63) <= advisory_key(task_name) < 2**63


@pytest.mark.postgres
async def test_postgres_leases_of_two_schemas_do_not_meet(task_name: str, tmp_path: Path) -> None:
    """Two deployments in separate schemas of one database each hold their own lease of a task; two
    processes of one schema still exclude each other."""
    urls = [fresh_database_url("postgres", tmp_path) for _ in range(2)]
    one, two = (next(u) for u in urls)
    a, b, c = PostgresLease(one), PostgresLease(two), PostgresLease(one)
    try:
        assert await a.acquire(task_name, 1) is not None
        assert await b.acquire(task_name, 1) is not None
        assert await c.acquire(task_name, 1) is None
    finally:
        for lease in (a, b, c):
            await lease.close()
        for u in urls:
            next(u, None)


@pytest.mark.redis
async def test_redis_lease_expires_and_refuses_a_stale_holder(task_name: str) -> None:
    a, b = RedisLease(REDIS_URL, key_prefix=task_name), RedisLease(REDIS_URL, key_prefix=task_name)
    try:
        t1 = await a.acquire(task_name, 0.3)
        assert t1 is not None and await b.acquire(task_name, 0.3) is None
        await asyncio.sleep(0.5)
        t2 = await b.acquire(task_name, 5)
        assert t2 is not None and t2 > t1
        assert not await a.renew(task_name, t1, 5), "a holder whose lease expired must not renew it"
        await a.release(task_name, t1)  # must not delete b's lease
        assert await a.acquire(task_name, 5) is None
    finally:
        await a.close()
        await b.close()


async def test_run_once_and_local_lease() -> None:
    seen: list[int] = []

    async def record(token: int) -> None:
        seen.append(token)

    async def broken(token: int) -> None:
        raise RuntimeError("task bug")

    runner = PeriodicRunner([PeriodicTask("a", 60, record), PeriodicTask("b", 60, broken)], LocalLease())
    assert await runner.run_once("a") and seen == [1]
    assert await runner.run_once("b") and runner.stats["b"].failures == 1
    with pytest.raises(ConfigError):
        await runner.run_once("missing")
    runner.start()
    await asyncio.sleep(0.1)
    await runner.stop()
    assert len(seen) == 2 and runner.stats["a"].runs == 2
    with pytest.raises(ConfigError):
        PeriodicRunner([PeriodicTask("a", 1, record), PeriodicTask("a", 2, record)], LocalLease())


def test_lease_choice(tmp_path: Path) -> None:
    base = {"data_dir": str(tmp_path)}
    assert isinstance(lease_for(Settings.model_validate(base)), LocalLease)
    pg = Settings.model_validate({**base, "database_url": SA_POSTGRES})
    assert isinstance(lease_for(pg), PostgresLease)
    rd = Settings.model_validate({**base, "queue": {"backend": "redis"}})
    assert isinstance(lease_for(rd), RedisLease)
    with pytest.raises(ConfigError):
        lease_for(Settings.model_validate({**base, "jobs": {"lease": "postgres"}}))
