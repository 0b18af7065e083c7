"""Job kinds used by the job tests (importable as ``job_kinds``; servers and workers load them with
``jobs.kinds: ["job_kinds:KINDS"]`` and ``tests`` on ``PYTHONPATH``)."""

from __future__ import annotations

import asyncio
from typing import Any

from modelyard.jobs import JobContext, JobKind


async def echo(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    ctx.log(f"echo for tenant {ctx.tenant}")
    return {"echo": payload, "job_id": ctx.job_id}


async def steps(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``n`` steps of ``sleep_s`` each; progress and a log line per step; stops at progress() once cancelled."""
    n, sleep_s = int(payload.get("n", 5)), float(payload.get("sleep_s", 0.1))
    ctx.start(n, "stepping")
    for i in range(n):
        await asyncio.sleep(sleep_s)
        ctx.log(f"step {i + 1}/{n}")
        ctx.progress(i + 1, n, f"step {i + 1}")
    return {"steps": n}


async def fail(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    ctx.log("about to fail")
    raise ValueError(payload.get("message", "boom"))


async def until_cancelled(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Checks ``ctx.cancelled`` (the ProgressSink way) and returns a partial result."""
    ctx.start(1000, "waiting for cancel")
    ticks = 0
    while not ctx.cancelled:
        await asyncio.sleep(0.05)
        ctx.advance()
        ticks += 1
    return {"stopped_after": ticks}


KINDS = [
    JobKind("test.echo", echo),
    JobKind("test.steps", steps),
    JobKind("test.fail", fail),
    JobKind("test.until_cancelled", until_cancelled),
]
