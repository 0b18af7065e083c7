"""Jobs through Redis Streams (queue.backend redis): ``modelyard worker --jobs KIND`` subprocesses run
them, a queued job cancelled before any worker saw it is never run, a running job sees its cancel, and
a worker killed mid-job loses the job to a live worker after the visibility timeout."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from modelyard.jobs import JobState
from modelyard.jobs.redis_queue import GROUP, stream_key
from modelyard.jobs.service import JobService, start_jobs
from modelyard.settings import Settings
from servers import free_port

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"


@pytest.fixture
def config(tmp_path: Path) -> Iterator[dict[str, Any]]:
    prefix = f"modelyard-test-{secrets.token_hex(6)}"
    yield {
        "data_dir": str(tmp_path / "data"),
        "database_url": f"sqlite:///{tmp_path / 'jobs.db'}",
        "queue": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix},
        "jobs": {
            "heartbeat_s": 0.2,
            "visibility_timeout_s": 1.5,
            "kinds": ["job_kinds:KINDS"],
            "periodic": False,
        },
    }
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def service(config: dict[str, Any]) -> AsyncIterator[JobService]:
    svc = await start_jobs(Settings.model_validate(config), [])
    yield svc
    await svc.stop()


class WorkerProc:
    def __init__(
        self, tmp: Path, config: dict[str, Any], worker_id: str, kinds: str, http_port: int | None = None
    ) -> None:
        path = tmp / f"{worker_id}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.ready = tmp / f"{worker_id}.ready"
        self.log = tmp / f"{worker_id}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
        env.pop("MODELYARD_CONFIG", None)
        args = [
            sys.executable,
            "-m",
            "modelyard.cli",
            "worker",
            "--config",
            str(path),
            "--jobs",
            kinds,
            "--worker-id",
            worker_id,
            "--ready-file",
            str(self.ready),
            "--log-level",
            "info",
        ]
        if http_port is not None:
            args += ["--http-port", str(http_port)]
        self.proc = subprocess.Popen(
            args,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "worker never became ready"
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def wait_state(svc: JobService, job_id: str, *states: JobState, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while (job := await svc.get(job_id)).state not in states:
        assert time.monotonic() < deadline, f"job stuck in {job.state}: {job}"
        await asyncio.sleep(0.05)
    return job


async def test_a_worker_runs_jobs_and_cancels(
    service: JobService, config: dict[str, Any], tmp_path: Path
) -> None:
    early = await service.submit("test.echo", {"early": True}, tenant="acme", created_by="cli")
    cancelled = await service.cancel(early.id)  # nobody has seen it yet
    assert cancelled.state is JobState.CANCELLED
    port = free_port()
    worker = WorkerProc(tmp_path, config, "wa", "test.echo,test.steps,test.fail", http_port=port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
        job = await service.submit("test.echo", {"x": 2}, tenant="acme", created_by="cli")
        done = await wait_state(service, job.id, JobState.SUCCEEDED, JobState.FAILED)
        assert done.state is JobState.SUCCEEDED and done.worker_id == "wa"
        assert done.result == {"echo": {"x": 2}, "job_id": job.id}
        failed = await service.submit("test.fail", {}, tenant=None, created_by="cli")
        assert (
            await wait_state(service, failed.id, JobState.FAILED, JobState.SUCCEEDED)
        ).error == "ValueError: boom"
        running = await service.submit(
            "test.steps", {"n": 200, "sleep_s": 0.05}, tenant=None, created_by="cli"
        )
        await wait_state(service, running.id, JobState.RUNNING)
        await asyncio.sleep(0.5)
        assert (await service.get(running.id)).progress_done > 0
        await service.cancel(running.id)
        stopped = await wait_state(service, running.id, JobState.CANCELLED, JobState.SUCCEEDED)
        assert stopped.state is JobState.CANCELLED and stopped.progress_done < 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert (
            'modelyard_job_worker_finished_total{worker="wa",kind="test.echo",state="succeeded"} 1' in metrics
        )
        assert 'kind="test.steps",state="cancelled"} 1' in metrics and 'state="failed"} 1' in metrics
        after = await service.get(early.id)
        assert after.state is JobState.CANCELLED and after.attempts == 0
        client = redis.Redis.from_url(REDIS_URL)
        try:
            stream = stream_key(config["queue"]["key_prefix"], "test.echo")
            deadline = time.monotonic() + 5
            while client.xlen(stream):  # every entry, the cancelled one included, is acknowledged and deleted
                assert time.monotonic() < deadline, client.xrange(stream)
                await asyncio.sleep(0.05)
            assert client.xpending(stream, GROUP)["pending"] == 0
        finally:
            client.close()
    finally:
        worker.stop()


async def test_a_killed_workers_job_is_reclaimed(
    service: JobService, config: dict[str, Any], tmp_path: Path
) -> None:
    a = WorkerProc(tmp_path, config, "wa", "test.steps")
    b: WorkerProc | None = None
    try:
        job = await service.submit("test.steps", {"n": 30, "sleep_s": 0.1}, tenant=None, created_by="cli")
        running = await wait_state(service, job.id, JobState.RUNNING)
        assert running.worker_id == "wa"
        await asyncio.sleep(0.6)
        a.stop(signal.SIGKILL)
        stalled = await service.get(job.id)
        assert stalled.state is JobState.RUNNING and stalled.progress_done > 0
        b = WorkerProc(tmp_path, config, "wb", "test.steps")
        done = await wait_state(service, job.id, JobState.SUCCEEDED, JobState.FAILED, timeout_s=60)
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.worker_id == "wb" and done.attempts == 2
        assert any("reclaimed from worker wa" in line for line in done.logs)
        assert done.result == {"steps": 30}
    finally:
        a.stop(signal.SIGKILL)
        if b is not None:
            b.stop()


async def test_a_worker_for_other_kinds_leaves_the_job_queued(
    service: JobService, config: dict[str, Any], tmp_path: Path
) -> None:
    worker = WorkerProc(tmp_path, config, "wc", "test.fail")
    try:
        job = await service.submit("test.echo", {}, tenant=None, created_by="cli")
        await asyncio.sleep(1.0)
        assert (await service.get(job.id)).state is JobState.QUEUED
    finally:
        worker.stop()
    client = redis.Redis.from_url(REDIS_URL)
    stream = stream_key(config["queue"]["key_prefix"], "test.echo")
    try:
        assert await service.requeue(every_queued=True) == 1
        assert await service.requeue(every_queued=True) == 1
        assert client.xlen(stream) == 1, "a requeue must not add a second entry for a queued job"
        client.delete(stream, stream + ":ids")  # Redis lost the queue; the row still says queued
        await service.requeue(every_queued=True)
        assert [f[b"job"].decode() for _, f in client.xrange(stream)] == [job.id]
    finally:
        client.close()
    bad = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "worker", "--jobs", "no.such.kind"],
        env={
            **os.environ,
            "PYTHONPATH": str(SRC),
            "MODELYARD_QUEUE__BACKEND": "redis",
            "MODELYARD_DATA_DIR": str(tmp_path / "d2"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown job kinds ['no.such.kind']" in bad.stderr.replace("\n", "")


async def test_a_worker_survives_redis_losing_its_streams(
    service: JobService, config: dict[str, Any], tmp_path: Path
) -> None:
    worker = WorkerProc(tmp_path, config, "wd", "test.echo")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        first = await service.submit("test.echo", {"n": 1}, tenant=None, created_by="cli")
        assert (await wait_state(service, first.id, JobState.SUCCEEDED)).worker_id == "wd"
        stream = stream_key(config["queue"]["key_prefix"], "test.echo")
        client.delete(stream, stream + ":ids")  # as after a Redis restart without persistence
        second = await service.submit("test.echo", {"n": 2}, tenant=None, created_by="cli")
        done = await wait_state(service, second.id, JobState.SUCCEEDED, timeout_s=30)
        assert done.result == {"echo": {"n": 2}, "job_id": second.id}
        assert worker.proc.poll() is None
    finally:
        client.close()
        worker.stop()
