"""The job table's only reader and writer: every state change is one short transaction.

Ownership: a running job belongs to the ``worker_id`` that claimed it. :meth:`JobStore.claim` takes a
``queued`` job, or a ``running`` one whose heartbeat is older than ``stale_before`` (its worker died);
every later write of the runner names its worker id and is refused once another worker has taken
the job over, so a worker that was merely slow cannot overwrite the new owner's record.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import NotFound
from modelyard.jobs.models import JobRow
from modelyard.jobs.records import JobInfo, JobState, bounded_logs
from modelyard.store.db import create_db_engine
from modelyard.store.db import migrate as migrate_engine


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written as UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _info(row: JobRow) -> JobInfo:
    return JobInfo(
        id=row.id,
        kind=row.kind,
        tenant=row.tenant_id,
        created_by=row.created_by,
        state=JobState(row.state),
        payload=dict(row.payload or {}),
        result=row.result,
        error=row.error,
        progress_done=row.progress_done,
        progress_total=row.progress_total,
        progress_message=row.progress_message,
        logs=list(row.logs or []),
        cancel_requested=row.cancel_requested,
        attempts=row.attempts,
        worker_id=row.worker_id,
        heartbeat_at=_aware(row.heartbeat_at),
        created_at=_aware(row.created_at),
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
    )


@dataclass(slots=True)
class Progress:
    """What a runner flushes on each heartbeat: progress so far and the log lines since the last flush."""

    done: float = 0.0
    total: float | None = None
    message: str | None = None
    new_logs: list[str] | None = None


@dataclass(slots=True, frozen=True)
class Beat:
    """The answer to a heartbeat: whether a cancel was asked for, and whether this worker still owns it."""

    cancel_requested: bool
    owned: bool


class JobStore:
    """Job records in the metadata store (SQLite or PostgreSQL). Call :meth:`migrate` once first."""

    def __init__(self, database_url: str, *, engine: Engine | None = None) -> None:
        self._engine = engine or create_db_engine(database_url)
        self._owns_engine = engine is None
        self._read = sessionmaker(self._engine, expire_on_commit=False)
        self._write = sessionmaker(self._engine.execution_options(write=True), expire_on_commit=False)

    def migrate(self) -> None:
        migrate_engine(self._engine)

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._write.begin() as session:
            yield session

    def _row(self, session: Session, job_id: str) -> JobRow:
        row = session.get(JobRow, job_id, with_for_update=True)
        if row is None:
            raise NotFound(f"job `{job_id}` does not exist", param="job_id")
        return row

    # -- callers ------------------------------------------------------------------------------------

    def create(self, kind: str, payload: dict[str, Any], *, tenant: str | None, created_by: str) -> JobInfo:
        now = _now()
        row = JobRow(
            id=f"job_{secrets.token_hex(12)}",
            kind=kind,
            tenant_id=tenant,
            created_by=created_by,
            state=JobState.QUEUED.value,
            payload=payload,
            logs=[],
            progress_done=0.0,
            cancel_requested=False,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        with self._tx() as s:
            s.add(row)
        return _info(row)

    def get(self, job_id: str) -> JobInfo:
        with self._read() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"job `{job_id}` does not exist", param="job_id")
            return _info(row)

    def list_jobs(
        self,
        tenant: str | None,
        *,
        every_tenant: bool = False,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        """Newest first. ``every_tenant`` lists all jobs; otherwise only ``tenant``'s (``None``: system jobs)."""
        q = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id).limit(limit)
        if not every_tenant:
            q = q.where(JobRow.tenant_id.is_(None) if tenant is None else JobRow.tenant_id == tenant)
        if state is not None:
            q = q.where(JobRow.state == state.value)
        if kind is not None:
            q = q.where(JobRow.kind == kind)
        with self._read() as s:
            return [_info(r) for r in s.scalars(q)]

    def request_cancel(self, job_id: str) -> JobInfo:
        """A queued job is cancelled at once; a running one gets ``cancel_requested``; a finished one stays."""
        with self._tx() as s:
            row = self._row(s, job_id)
            now = _now()
            if row.state == JobState.QUEUED.value:
                row.state, row.finished_at = JobState.CANCELLED.value, now
                row.cancel_requested = True
            elif row.state == JobState.RUNNING.value:
                row.cancel_requested = True
            row.updated_at = now
            return _info(row)

    def pending(self, kinds: list[str], *, queued_before: datetime, stale_before: datetime) -> list[JobInfo]:
        """Jobs of ``kinds`` that nobody is working on: queued before ``queued_before``, or running with a
        heartbeat older than ``stale_before``."""
        q = select(JobRow).where(
            JobRow.kind.in_(kinds),
            or_(
                (JobRow.state == JobState.QUEUED.value) & (JobRow.created_at < queued_before),
                (JobRow.state == JobState.RUNNING.value) & (JobRow.heartbeat_at < stale_before),
            ),
        )
        with self._read() as s:
            return [_info(r) for r in s.scalars(q.order_by(JobRow.created_at))]

    def prune(self, finished_before: datetime) -> int:
        """Delete finished jobs older than ``finished_before``; returns how many."""
        terminal = [s.value for s in JobState if s.terminal]
        with self._tx() as s:
            result = s.execute(
                delete(JobRow).where(JobRow.state.in_(terminal), JobRow.finished_at < finished_before)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- runners ------------------------------------------------------------------------------------

    def claim(
        self, job_id: str, worker_id: str, *, stale_before: datetime, max_attempts: int
    ) -> JobInfo | None:
        """Take ``job_id`` for ``worker_id`` (see the module docstring); ``None`` if it is not to be run.

        A stale job that has already been tried ``max_attempts`` times is failed instead of retried.
        """
        with self._tx() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None:
                return None
            now = _now()
            if row.state == JobState.RUNNING.value:
                beat = _aware(row.heartbeat_at)
                if beat is not None and beat >= stale_before:
                    return None
                if row.attempts >= max_attempts:
                    row.state, row.finished_at, row.updated_at = JobState.FAILED.value, now, now
                    row.error = f"worker lost {row.attempts} times (last: {row.worker_id}); giving up"
                    return None
                row.logs = bounded_logs(list(row.logs or []), [f"reclaimed from worker {row.worker_id}"])
            elif row.state != JobState.QUEUED.value:
                return None
            row.state = JobState.RUNNING.value
            row.attempts += 1
            row.worker_id, row.heartbeat_at, row.updated_at = worker_id, now, now
            row.started_at = row.started_at or now
            return _info(row)

    def beat(self, job_id: str, worker_id: str, progress: Progress) -> Beat:
        """Store progress and new log lines; answers whether to cancel and whether the job is still ours."""
        with self._tx() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or row.worker_id != worker_id or row.state != JobState.RUNNING.value:
                return Beat(cancel_requested=True, owned=False)
            self._apply(row, progress)
            return Beat(cancel_requested=row.cancel_requested, owned=True)

    def finish(
        self,
        job_id: str,
        worker_id: str,
        state: JobState,
        progress: Progress,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the outcome; ``False`` (and nothing written) if another worker owns the job now."""
        with self._tx() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or row.worker_id != worker_id or row.state != JobState.RUNNING.value:
                return False
            self._apply(row, progress)
            row.state, row.result, row.error = state.value, result, error
            row.finished_at = row.updated_at
            return True

    @staticmethod
    def _apply(row: JobRow, progress: Progress) -> None:
        now = _now()
        row.progress_done, row.progress_total = progress.done, progress.total
        row.progress_message = progress.message
        if progress.new_logs:
            row.logs = bounded_logs(list(row.logs or []), progress.new_logs)
        row.heartbeat_at = row.updated_at = now
