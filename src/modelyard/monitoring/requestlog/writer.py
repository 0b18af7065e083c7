"""Buffered, batched request-log writes and retention, off the request path.

:meth:`RequestLogWriter.enqueue` is a non-blocking append to a bounded in-memory buffer (a full
buffer drops the new record and counts it). A background task wakes every ``flush_interval_s`` (or
as soon as a batch is full), and in a worker thread redacts, cuts and inserts up to ``batch_size``
records in one transaction. A failed write drops that batch (counted) rather than growing memory.
Retention deletes records older than ``retention_days`` once an hour. ``stop`` flushes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy import Engine

from modelyard.monitoring.requestlog.records import RequestLogRow, RequestRecord
from modelyard.monitoring.requestlog.redaction import Redactor
from modelyard.settings import RequestLogSettings

log = logging.getLogger("modelyard.monitoring")
RETENTION_EVERY_S = 3600.0


class RequestLogWriter:
    def __init__(
        self,
        engine: Engine,
        settings: RequestLogSettings,
        *,
        on_dropped: Callable[[int], None] = lambda n: None,
        on_written: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._engine = engine
        self._s = settings
        self._redactor = Redactor(settings.redact, settings.redact_patterns)
        self._buf: deque[RequestRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_dropped = on_dropped
        self._on_written = on_written
        self._last_retention = 0.0

    def enqueue(self, record: RequestRecord) -> bool:
        """Buffer ``record``; False (and counted as dropped) when the buffer is full."""
        if len(self._buf) >= self._s.buffer_size:
            self._on_dropped(1)
            return False
        self._buf.append(record)
        if len(self._buf) >= self._s.batch_size:
            self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._buf)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._buf:
            await self._flush_once()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._s.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            while self._buf:
                await self._flush_once()
            if time.monotonic() - self._last_retention >= RETENTION_EVERY_S:
                self._last_retention = time.monotonic()
                try:
                    await anyio.to_thread.run_sync(self.apply_retention)
                except Exception:
                    log.exception("request-log retention failed")

    async def _flush_once(self) -> None:
        batch = [self._buf.popleft() for _ in range(min(self._s.batch_size, len(self._buf)))]
        try:
            await anyio.to_thread.run_sync(self.write, batch)
        except Exception:
            log.exception("request-log write of %d records failed; dropped", len(batch))
            self._on_dropped(len(batch))
        else:
            self._on_written(len(batch))

    def _prepare(self, r: RequestRecord) -> dict[str, Any]:
        row = r.row()
        cap = self._s.max_text_chars
        prompt = self._redactor.value(r.prompt)
        if isinstance(prompt, str):
            prompt = prompt[:cap]
        elif prompt is not None:
            prompt = _cut_json(prompt, cap)
        row["prompt"] = prompt
        row["response"] = None if r.response is None else self._redactor.text(r.response)[:cap]
        if r.error_message:
            row["error_message"] = self._redactor.text(r.error_message)[:1000]
        row["params"] = self._redactor.value(r.params)
        return row

    def write(self, batch: list[RequestRecord]) -> None:
        """Redact and insert ``batch`` in one transaction (runs in a worker thread)."""
        rows = [self._prepare(r) for r in batch]
        with self._engine.begin() as conn:
            conn.execute(sa.insert(RequestLogRow), rows)

    def apply_retention(self, now: datetime | None = None) -> int:
        """Delete records older than ``retention_days``; returns how many went."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self._s.retention_days)
        with self._engine.begin() as conn:
            result = conn.execute(sa.delete(RequestLogRow).where(RequestLogRow.created_at < cutoff))
        return int(result.rowcount or 0)


def _cut_json(value: Any, cap: int) -> Any:
    """Cut every string in ``value`` so the total text stays within ``cap`` characters."""
    budget = [cap]

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            out = v[: max(budget[0], 0)]
            budget[0] -= len(out)
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    return walk(value)
