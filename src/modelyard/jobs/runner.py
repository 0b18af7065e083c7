"""Running one job: claim its row, call the handler, heartbeat while it runs, record the outcome.

Both queues (in process and Redis Streams) hand job ids to :func:`run_job`; the job row decides
whether the id is still to be run (see :meth:`~modelyard.jobs.store.JobStore.claim`), so a duplicate
or late delivery is harmless. While the handler runs, every ``heartbeat_s`` the runner flushes
progress and logs and reads the cancel flag (a failed heartbeat is logged and retried, never fatal);
if the row says another worker owns the job now, the
handler is cancelled and nothing more is written. A runner stopped from outside (server shutdown)
cancels its handler and leaves the row ``running``: its heartbeat goes stale and the job is reclaimed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from modelyard.aio import STOP_BOUND_S, cancel_and_wait
from modelyard.jobs.context import JobCancelled, JobContext
from modelyard.jobs.records import JobInfo, JobKind, JobState
from modelyard.jobs.store import JobStore

log = logging.getLogger("modelyard.jobs")

FINISH_ATTEMPTS = 5  # tries to record an outcome (a heartbeat apart) before the run is given up


@dataclass(slots=True, frozen=True)
class RunnerConfig:
    """Timing of runners; ``visibility_timeout_s`` must exceed ``heartbeat_s`` several times over."""

    heartbeat_s: float = 2.0
    visibility_timeout_s: float = 30.0
    max_attempts: int = 3

    def stale_before(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self.visibility_timeout_s)


def _check_result(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"the handler returned {type(value).__name__}, not a dict")
    json.dumps(value)  # raises TypeError for what the JSON column cannot hold
    return value


async def run_job(
    store: JobStore, kinds: Mapping[str, JobKind], job_id: str, worker_id: str, cfg: RunnerConfig
) -> JobInfo | None:
    """Run ``job_id`` if it is to be run; returns its final record, or ``None`` if not run (or lost)."""
    info = await anyio.to_thread.run_sync(
        lambda: store.claim(job_id, worker_id, stale_before=cfg.stale_before(), max_attempts=cfg.max_attempts)
    )
    if info is None:
        return None
    ctx = JobContext(info.id, info.tenant)
    kind = kinds.get(info.kind)
    state: JobState
    result: dict[str, Any] | None
    error: str | None
    if kind is None:
        state, result, error = JobState.FAILED, None, f"no handler for job kind `{info.kind}` on {worker_id}"
    else:
        task: asyncio.Task[dict[str, Any]] = asyncio.ensure_future(kind.handler(ctx, dict(info.payload)))
        try:
            outcome = await _supervise(store, task, ctx, worker_id, cfg)
        except BaseException:
            await cancel_and_wait([task], STOP_BOUND_S, what=f"job {job_id}")
            raise
        if outcome is None:
            log.warning("job %s was taken over by another worker; dropped here", job_id)
            return None
        state, result, error = outcome
    if state is JobState.FAILED:
        log.warning("job %s (%s) failed: %s", job_id, info.kind, error)
    final = ctx.take()
    for attempt in range(FINISH_ATTEMPTS):
        try:
            done = await anyio.to_thread.run_sync(
                lambda: store.finish(job_id, worker_id, state, final, result=result, error=error)
            )
            break
        except Exception as exc:
            if attempt == FINISH_ATTEMPTS - 1:
                raise  # the row stays running, goes stale and the job runs again elsewhere
            log.warning("recording the outcome of job %s failed (%s); retrying", job_id, exc)
            await asyncio.sleep(cfg.heartbeat_s)
    return await anyio.to_thread.run_sync(store.get, job_id) if done else None


async def _supervise(
    store: JobStore, task: asyncio.Task[dict[str, Any]], ctx: JobContext, worker_id: str, cfg: RunnerConfig
) -> tuple[JobState, dict[str, Any] | None, str | None] | None:
    while True:
        finished, _ = await asyncio.wait({task}, timeout=cfg.heartbeat_s)
        if finished:
            break
        progress = ctx.take()
        try:
            beat = await anyio.to_thread.run_sync(store.beat, ctx.job_id, worker_id, progress)
        except Exception as err:  # a database blip must not kill the job: keep the lines for the next beat
            log.warning("heartbeat of job %s failed: %s", ctx.job_id, err)
            ctx.requeue_logs(progress.new_logs or [])
            continue
        if not beat.owned:
            await cancel_and_wait([task], STOP_BOUND_S, what=f"job {ctx.job_id}")
            return None
        if beat.cancel_requested:
            ctx.mark_cancelled()
    failure = task.exception() if not task.cancelled() else JobCancelled(ctx.job_id)
    if failure is None:
        try:
            result = _check_result(task.result())
        except TypeError as bad:
            return JobState.FAILED, None, str(bad)
        return (JobState.CANCELLED if ctx.cancelled else JobState.SUCCEEDED), result, None
    if isinstance(failure, JobCancelled):
        return JobState.CANCELLED, None, None
    for line in traceback.format_exception(failure)[-8:]:
        ctx.log(line.rstrip())
    return JobState.FAILED, None, f"{type(failure).__name__}: {failure}"
