"""What a running job sees: :class:`JobContext`, and the :class:`ProgressSink` protocol it satisfies.

:class:`ProgressSink` is the seam long-running code (the eval runner, fine-tuning) reports through, so
that the same code drives a terminal progress bar from the CLI and a job record inside a server::

    sink.start(total=len(items), description="eval smoke-30")
    for item in items:
        if sink.cancelled:
            break  # stop cooperatively; the caller decides what a partial result means
        ...
        sink.advance()
        sink.log(f"item {item.id}: pass")

Contract: ``start`` may be called again (a new phase resets the count); ``advance`` and ``log`` never
block on I/O and never raise; ``cancelled`` is cheap to read (no I/O) and, once true, stays true.

:class:`JobContext` records progress and log lines in memory; the runner flushes them to the job row
on every heartbeat and at the end, and sets :attr:`JobContext.cancelled` when the row's
``cancel_requested`` flag is seen. :meth:`JobContext.progress` raises :class:`JobCancelled` once
cancelled, which is the easy way for a handler to stop.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from modelyard.jobs.records import MAX_LOG_LINES
from modelyard.jobs.store import Progress


class JobCancelled(Exception):
    """Raised inside a handler (by :meth:`JobContext.progress`) once its job was cancelled."""


@runtime_checkable
class ProgressSink(Protocol):
    """Where long-running work reports progress and logs, and learns it was cancelled (module docstring)."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def log(self, line: str) -> None: ...

    @property
    def cancelled(self) -> bool: ...


class JobContext:
    """The running job's handle, passed to ``handler(ctx, payload)``. Not shared between jobs."""

    __slots__ = ("_cancelled", "_done", "_message", "_pending_logs", "_total", "job_id", "tenant")

    def __init__(self, job_id: str, tenant: str | None) -> None:
        self.job_id = job_id
        self.tenant = tenant  # None: a system job
        self._done = 0.0
        self._total: float | None = None
        self._message: str | None = None
        self._pending_logs: list[str] = []
        self._cancelled = False

    # -- the handler's side --------------------------------------------------------------------------

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Set progress (``total`` and ``message`` kept when not given); raises :class:`JobCancelled`
        if the job was cancelled."""
        self._done = float(done)
        if total is not None:
            self._total = float(total)
        if message is not None:
            self._message = message
        if self._cancelled:
            raise JobCancelled(self.job_id)

    def start(self, total: int, description: str) -> None:
        self._done, self._total, self._message = 0.0, float(total), description

    def advance(self, n: int = 1) -> None:
        self._done += n

    def log(self, line: str) -> None:
        self._pending_logs.append(str(line))
        if len(self._pending_logs) > MAX_LOG_LINES:  # only the last lines survive the flush anyway
            del self._pending_logs[: len(self._pending_logs) - MAX_LOG_LINES]

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # -- the runner's side ---------------------------------------------------------------------------

    def mark_cancelled(self) -> None:
        self._cancelled = True

    def requeue_logs(self, lines: list[str]) -> None:
        """Put back lines a failed flush took, ahead of those written since."""
        self._pending_logs[:0] = lines
        if len(self._pending_logs) > MAX_LOG_LINES:
            del self._pending_logs[: len(self._pending_logs) - MAX_LOG_LINES]

    def take(self) -> Progress:
        """Progress now, with the log lines written since the last call (which are handed over)."""
        logs, self._pending_logs = self._pending_logs, []
        return Progress(self._done, self._total, self._message, logs)
