"""Stopping asyncio tasks within a bound.

A single ``task.cancel()`` does not always stop a task on Python 3.11: ``asyncio.wait_for`` there
drops a cancellation that lands after the awaited operation finished but before ``wait_for``
resumed (CPython gh-86296, fixed in 3.12), and redis-py wraps every socket write in
``asyncio.wait_for(..., socket_timeout)``. A ``while True`` loop that talks to Redis can therefore
swallow its one cancel and keep running (``task.cancelling() == 1``), and an unbounded
``await task`` after it never returns: that was the gateway's shutdown hang with the Redis queue.

:func:`cancel_and_wait` is the shutdown primitive for every such loop: it cancels, waits, cancels
again every :data:`RECANCEL_S` while a task is still running, and gives up after ``timeout_s``
(logging what is left), so a stop never waits longer than its stated bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("modelyard")

RECANCEL_S = 0.25  # a task still running this long after a cancel is cancelled again
STOP_BOUND_S = 10.0  # the longest a background loop (jobs, periodic tasks) may take to stop


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], timeout_s: float, *, what: str = "tasks"
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they end, for at most ``timeout_s`` seconds.

    Cancels again every ``RECANCEL_S`` while one is still running (a lost cancel is re-sent).
    Returns the tasks still running at the deadline (logged; never raises for them). Exceptions of
    the tasks that ended are retrieved (not raised), as ``gather(..., return_exceptions=True)`` does.
    """
    tasks = list(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: a failed loop must not warn at garbage collection
    if pending:
        log.error(
            "%d %s still running %.1fs after cancellation; abandoned: %s",
            len(pending),
            what,
            timeout_s,
            ", ".join(sorted(t.get_name() for t in pending)),
        )
    return pending
