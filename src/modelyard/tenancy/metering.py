"""The meter: usage records leave the request path through a bounded buffer and are inserted in batches.

``record`` only enqueues (it waits only when ``metering_buffer`` records are already pending, which
bounds memory and pushes back instead of dropping billing data). One writer task takes up to
``metering_batch`` records at a time, or whatever arrived within ``metering_flush_s``, and inserts them
in the thread pool. A failed insert is retried with the same record ids, and the store skips ids it
already holds, so a retry never double-counts. ``close`` flushes everything still buffered.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import anyio

from modelyard.tenancy.records import Usage
from modelyard.tenancy.store import TenancyStore

log = logging.getLogger("modelyard.tenancy")
RETRY_DELAYS_S = (0.1, 0.5, 2.0, 5.0)


@dataclass(slots=True)
class MeterStats:
    recorded: int = 0
    written: int = 0
    batches: int = 0
    failed_inserts: int = 0
    buffer_full_waits: int = 0


class Meter:
    def __init__(self, store: TenancyStore, *, buffer: int, batch: int, flush_s: float) -> None:
        self._store = store
        self._queue: asyncio.Queue[Usage] = asyncio.Queue(maxsize=buffer)
        self._batch = batch
        self._flush_s = flush_s
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[Usage] = []
        self.stats = MeterStats()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def record(self, usage: Usage) -> None:
        self.stats.recorded += 1
        if self._queue.full():
            self.stats.buffer_full_waits += 1
        await self._queue.put(usage)

    async def _take_batch(self) -> list[Usage]:
        batch = self._inflight = [await self._queue.get()]  # owned by close() if cancelled below
        if self._queue.qsize() < self._batch - 1 and not self._queue.full():
            await asyncio.sleep(self._flush_s)  # let a batch gather (producers are not blocked)
        while len(batch) < self._batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: list[Usage]) -> None:
        for attempt in range(len(RETRY_DELAYS_S) + 1):
            try:
                await anyio.to_thread.run_sync(self._store.insert_usage, batch)
                self.stats.written += len(batch)
                self.stats.batches += 1
                return
            except Exception:
                self.stats.failed_inserts += 1
                if attempt == len(RETRY_DELAYS_S):
                    log.exception("dropping %d usage records after repeated insert failures", len(batch))
                    return
                log.warning("usage insert failed; retrying", exc_info=True)
                await asyncio.sleep(RETRY_DELAYS_S[attempt])

    async def _run(self) -> None:
        while True:
            self._inflight = await self._take_batch()
            await self._write(self._inflight)
            self._inflight = []

    async def flush(self) -> None:
        """Write everything buffered now (tests and shutdown)."""
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(self._batch, self._queue.qsize()))]
            await self._write(batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._inflight:  # cancelled mid-insert: write again; ids already stored are skipped
            await self._write(self._inflight)
            self._inflight = []
        await self.flush()
