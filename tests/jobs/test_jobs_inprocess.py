"""Jobs run in process (queue.backend local) on SQLite and PostgreSQL: results, failures, progress and
logs persisted while running, cancel of a queued and of a running job, and adoption after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from job_kinds import KINDS
from modelyard.errors import InvalidRequest, NotFound
from modelyard.jobs import JobState
from modelyard.jobs.context import JobContext, ProgressSink
from modelyard.jobs.records import MAX_LOG_LINES
from modelyard.jobs.service import JobService, start_jobs
from modelyard.settings import Settings


def settings_for(database_url: str, tmp_path: Any, **jobs: Any) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "database_url": database_url,
            "jobs": {"heartbeat_s": 0.1, "visibility_timeout_s": 1.0, "periodic": False, **jobs},
        }
    )


@pytest.fixture
async def service(database_url: str, tmp_path: Any) -> AsyncIterator[JobService]:
    svc = await start_jobs(settings_for(database_url, tmp_path), KINDS)
    yield svc
    await svc.stop()


async def wait_state(svc: JobService, job_id: str, *states: JobState, timeout_s: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        job = await svc.get(job_id)
        if job.state in states:
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job stuck in {job.state}: {job}"
        await asyncio.sleep(0.05)


async def test_job_runs_to_a_result(service: JobService) -> None:
    job = await service.submit("test.echo", {"x": 1}, tenant="acme", created_by="key:k1")
    assert job.state is JobState.QUEUED and job.tenant == "acme"
    done = await wait_state(service, job.id, JobState.SUCCEEDED, JobState.FAILED)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result == {"echo": {"x": 1}, "job_id": job.id}
    assert done.logs == ["echo for tenant acme"]
    assert done.attempts == 1 and done.started_at and done.finished_at
    assert done.created_by == "key:k1"


async def test_failure_keeps_the_error_and_traceback(service: JobService) -> None:
    job = await service.submit("test.fail", {"message": "bad item 7"}, tenant=None, created_by="cli")
    done = await wait_state(service, job.id, JobState.FAILED, JobState.SUCCEEDED)
    assert done.state is JobState.FAILED
    assert done.error == "ValueError: bad item 7"
    assert done.logs[0] == "about to fail" and any("ValueError" in line for line in done.logs[1:])


async def test_unknown_kind_is_refused_naming_the_field(service: JobService) -> None:
    with pytest.raises(InvalidRequest) as info:
        await service.submit("nope", {}, tenant=None, created_by="cli")
    assert info.value.param == "kind"
    with pytest.raises(NotFound):
        await service.get("job_missing")


async def test_progress_and_logs_are_persisted_while_running(service: JobService) -> None:
    job = await service.submit("test.steps", {"n": 20, "sleep_s": 0.1}, tenant=None, created_by="cli")
    seen: set[float] = set()
    deadline = asyncio.get_running_loop().time() + 20
    while (cur := await service.get(job.id)).state is not JobState.SUCCEEDED:
        assert asyncio.get_running_loop().time() < deadline
        if cur.state is JobState.RUNNING and 0 < cur.progress_done < 20:
            seen.add(cur.progress_done)
            assert cur.progress_total == 20
            assert cur.logs and cur.logs[-1].startswith("step ")
        await asyncio.sleep(0.05)
    assert len(seen) >= 3, f"progress was stored only at {sorted(seen)}"
    assert cur.progress_done == 20 and cur.progress_message == "step 20" and cur.result == {"steps": 20}
    assert len(cur.logs) == 20


async def test_logs_are_bounded(service: JobService) -> None:
    n = MAX_LOG_LINES + 50
    job = await service.submit("test.steps", {"n": n, "sleep_s": 0}, tenant=None, created_by="cli")
    done = await wait_state(service, job.id, JobState.SUCCEEDED)
    assert len(done.logs) == MAX_LOG_LINES
    assert done.logs[-1] == f"step {n}/{n}" and done.logs[0] == f"step {n - MAX_LOG_LINES + 1}/{n}"


async def test_cancel_a_running_job_stops_it(service: JobService) -> None:
    job = await service.submit("test.steps", {"n": 500, "sleep_s": 0.05}, tenant=None, created_by="cli")
    await wait_state(service, job.id, JobState.RUNNING)
    await asyncio.sleep(0.3)
    marked = await service.cancel(job.id)
    assert marked.state is JobState.RUNNING and marked.cancel_requested
    done = await wait_state(service, job.id, JobState.CANCELLED, JobState.SUCCEEDED, JobState.FAILED)
    assert done.state is JobState.CANCELLED
    assert 0 < done.progress_done < 500


async def test_cancel_seen_through_the_progress_sink(service: JobService) -> None:
    job = await service.submit("test.until_cancelled", {}, tenant=None, created_by="cli")
    await wait_state(service, job.id, JobState.RUNNING)
    await service.cancel(job.id)
    done = await wait_state(service, job.id, JobState.CANCELLED, JobState.SUCCEEDED)
    assert done.state is JobState.CANCELLED and done.result is not None and done.result["stopped_after"] > 0


async def test_cancel_a_queued_job_at_once(database_url: str, tmp_path: Any) -> None:
    svc = await start_jobs(settings_for(database_url, tmp_path, concurrency=1), KINDS)
    try:
        blocker = await svc.submit("test.steps", {"n": 40, "sleep_s": 0.05}, tenant=None, created_by="cli")
        queued = await svc.submit("test.echo", {}, tenant=None, created_by="cli")
        await wait_state(svc, blocker.id, JobState.RUNNING)
        cancelled = await svc.cancel(queued.id)
        assert cancelled.state is JobState.CANCELLED and cancelled.finished_at is not None
        await wait_state(svc, blocker.id, JobState.SUCCEEDED)
        await asyncio.sleep(0.3)
        after = await svc.get(queued.id)
        assert after.state is JobState.CANCELLED and after.attempts == 0 and after.result is None
        again = await svc.cancel(blocker.id)  # a finished job stays as it is
        assert again.state is JobState.SUCCEEDED and not again.cancel_requested
    finally:
        await svc.stop()


async def test_jobs_left_by_a_stopped_server_run_after_restart(database_url: str, tmp_path: Any) -> None:
    settings = settings_for(database_url, tmp_path, concurrency=1)
    first = await start_jobs(settings, KINDS)
    long = await first.submit("test.steps", {"n": 100, "sleep_s": 0.05}, tenant=None, created_by="cli")
    waiting = await first.submit("test.echo", {"w": 1}, tenant=None, created_by="cli")
    await wait_state(first, long.id, JobState.RUNNING)
    await first.stop()  # the running one is left "running" with a heartbeat that goes stale
    assert (await asyncio.to_thread(_reader(settings), long.id)).state is JobState.RUNNING
    await asyncio.sleep(settings.jobs.visibility_timeout_s + 0.2)
    second = await start_jobs(settings, KINDS)
    try:
        done = await wait_state(second, waiting.id, JobState.SUCCEEDED)
        assert done.result == {"echo": {"w": 1}, "job_id": waiting.id}
        redone = await wait_state(second, long.id, JobState.SUCCEEDED, timeout_s=30)
        assert redone.attempts == 2 and "reclaimed from worker" in redone.logs[0]
    finally:
        await second.stop()


def _reader(settings: Settings) -> Any:
    from modelyard.jobs.store import JobStore

    store = JobStore(settings.resolved_database_url)

    def get(job_id: str) -> Any:
        try:
            return store.get(job_id)
        finally:
            store.close()

    return get


def test_job_context_is_a_progress_sink() -> None:
    ctx = JobContext("job_x", "acme")
    assert isinstance(ctx, ProgressSink)
    ctx.start(10, "phase one")
    ctx.advance()
    ctx.advance(2)
    ctx.log("hello")
    p = ctx.take()
    assert (p.done, p.total, p.message, p.new_logs) == (3, 10, "phase one", ["hello"])
    assert ctx.take().new_logs == []
    assert not ctx.cancelled
    ctx.mark_cancelled()
    assert ctx.cancelled
    from modelyard.jobs import JobCancelled

    with pytest.raises(JobCancelled):
        ctx.progress(4)


async def test_in_process_queue_drops_a_requeue_of_a_job_it_holds(database_url: str, tmp_path: Any) -> None:
    from modelyard.jobs.service import build_jobs

    svc = build_jobs(settings_for(database_url, tmp_path), KINDS)  # nothing started: nothing consumes
    await asyncio.to_thread(svc.store.migrate)
    try:
        job = await svc.submit("test.echo", {}, tenant=None, created_by="cli")
        assert await svc.requeue(every_queued=True) == 1
        assert svc.queue._ids.qsize() == 1  # type: ignore[attr-defined]
    finally:
        await svc.stop()
    assert job.state is JobState.QUEUED
