"""Plain records of the job system: states, a job as callers see it, and a job kind.

Rows never leave :mod:`modelyard.jobs.store`; everything else gets a :class:`JobInfo`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.jobs.context import JobContext

# Lines of log kept per job: older lines are dropped as new ones arrive (the job row stays small).
MAX_LOG_LINES = 200
# Longest single log line stored; longer lines are cut (a handler printing a whole file stays bounded).
MAX_LOG_LINE_CHARS = 2000


class JobState(StrEnum):
    """``queued`` → ``running`` → one of the terminal states; ``queued`` → ``cancelled`` directly."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


Handler = Callable[["JobContext", dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(slots=True, frozen=True)
class JobKind:
    """A kind of job: its name (``eval.run``, ``finetune.lora``) and the coroutine that does the work.

    ``handler(ctx, payload)`` returns the JSON-able result; raising fails the job (the error text is
    stored), raising :class:`~modelyard.jobs.context.JobCancelled` (or returning after
    ``ctx.cancelled`` turned true) cancels it.
    """

    name: str
    handler: Handler


@dataclass(slots=True)
class JobInfo:
    """One job as stored: the metadata store's row is the source of truth for every field."""

    id: str
    kind: str
    tenant: str | None  # None: a system job
    created_by: str
    state: JobState
    payload: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None
    progress_done: float = 0.0
    progress_total: float | None = None
    progress_message: str | None = None
    logs: list[str] = field(default_factory=list)
    cancel_requested: bool = False
    attempts: int = 0
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self, *, logs: bool = True) -> dict[str, Any]:
        """The JSON shape of the admin API (``object: "job"``)."""

        def ts(t: datetime | None) -> str | None:
            return t.isoformat() if t is not None else None

        out: dict[str, Any] = {
            "object": "job",
            "id": self.id,
            "kind": self.kind,
            "tenant": self.tenant,
            "created_by": self.created_by,
            "state": self.state.value,
            "progress": {
                "done": self.progress_done,
                "total": self.progress_total,
                "message": self.progress_message,
            },
            "payload": self.payload,
            "result": self.result,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "attempts": self.attempts,
            "worker_id": self.worker_id,
            "heartbeat_at": ts(self.heartbeat_at),
            "created_at": ts(self.created_at),
            "started_at": ts(self.started_at),
            "finished_at": ts(self.finished_at),
        }
        if logs:
            out["logs"] = self.logs
        return out


def bounded_logs(lines: list[str], new: list[str]) -> list[str]:
    """``lines + new`` keeping only the last :data:`MAX_LOG_LINES`, each cut to :data:`MAX_LOG_LINE_CHARS`."""
    merged = lines + [line[:MAX_LOG_LINE_CHARS] for line in new]
    return merged[-MAX_LOG_LINES:]
