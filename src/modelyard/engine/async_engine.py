"""The asyncio face of the engine: the step loop runs on its own thread.

Hand-off: callers put commands (add, abort, adapter load/unload) into a thread-safe inbox and
notify a condition; the engine thread drains the inbox at the start of each step, runs the step
and delivers its outputs with ``loop.call_soon_threadsafe`` into per-request asyncio queues. The
thread sleeps on the condition when nothing is queued or running. The asyncio loop only ever
touches its queues; the engine thread only ever touches the :class:`LLMEngine`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from modelyard.engine.config import EngineConfig
from modelyard.engine.core import EngineStats, LLMEngine
from modelyard.engine.request import GenerateRequest, RequestOutput
from modelyard.errors import Conflict, EngineError

_Command = Callable[[LLMEngine], None]


class AsyncEngine:
    """Streams :class:`RequestOutput` for concurrent requests from one :class:`LLMEngine`.

    Create, ``start()`` inside a running event loop, ``async for out in generate(req)``, and
    ``await shutdown()``. Every method except ``generate``'s iteration is safe to call from the loop.
    """

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._inbox: list[_Command] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[str, asyncio.Queue[RequestOutput | BaseException]] = {}

    @classmethod
    def from_source(
        cls, source: str | Path, engine_config: EngineConfig | None = None, *, cache_dir: Path
    ) -> AsyncEngine:
        return cls(LLMEngine.from_source(source, engine_config, cache_dir=cache_dir))

    # ---- what the gateway reads ---------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def chat_template(self) -> str | None:
        return self.engine.chat_template

    @property
    def model_config(self) -> Any:
        return self.engine.model_config

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters (read without stopping the step loop)."""
        return self.engine.stats()

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread; call from the event loop that will consume outputs."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="modelyard-engine", daemon=True)
        self._thread.start()

    async def shutdown(self) -> None:
        """Stop the thread after the current step; open streams end with ``EngineError``."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify()
        await asyncio.to_thread(thread.join)
        self._thread = None
        error = EngineError("the engine shut down")
        for queue in self._streams.values():
            queue.put_nowait(error)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- requests -----------------------------------------------------------------------------
    async def generate(self, request: GenerateRequest) -> AsyncIterator[RequestOutput]:
        """Yield the request's outputs as they are produced; the last one carries ``usage``.

        Raises the engine's validation errors before yielding. If the consumer stops early
        (closes the generator or its task is cancelled) the request is aborted at once.
        """
        if not self.running:
            raise EngineError("the engine is not running; call start()")
        self.engine.check_request(request)
        rid = request.request_id
        if rid in self._streams:
            raise Conflict(f"request id {rid!r} is already streaming", param="request_id")
        queue: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()
        self._streams[rid] = queue
        self._submit(lambda e: self._add(e, request))
        done = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    done = True
                    raise item
                if item.usage is not None:
                    done = True
                yield item
                if done:
                    return
        finally:
            self._streams.pop(rid, None)
            if not done:
                self._submit(lambda e: self._drop(e.abort(rid)))

    def abort(self, request_id: str) -> None:
        """Abort a request; its stream ends with a ``finish_reason="abort"`` output."""
        self._submit(lambda e: self._deliver(e.abort(request_id)))

    async def load_lora(self, name: str, path: str | Path) -> None:
        """Load an adapter between steps; raises what ``LLMEngine.load_lora`` raises."""
        await self._call(lambda e: e.load_lora(name, path))

    async def unload_lora(self, name: str) -> None:
        await self._call(lambda e: e.unload_lora(name))

    def lora_names(self) -> list[str]:
        return self.engine.lora_names()

    # ---- engine thread ------------------------------------------------------------------------
    def _submit(self, command: _Command) -> None:
        with self._cond:
            self._inbox.append(command)
            self._cond.notify()

    async def _call(self, fn: Callable[[LLMEngine], None]) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if not future.done():
                future.set_exception(exc) if exc is not None else future.set_result(None)

        def command(engine: LLMEngine) -> None:
            try:
                fn(engine)
            except Exception as exc:  # handed to the awaiting caller
                loop.call_soon_threadsafe(settle, exc)
            else:
                loop.call_soon_threadsafe(settle, None)

        if not self.running:
            fn(self.engine)  # no step loop to race with
            return
        self._submit(command)
        await future

    @staticmethod
    def _drop(_: list[RequestOutput]) -> None:
        """Closing outputs of a request whose consumer already left go nowhere."""

    def _add(self, engine: LLMEngine, request: GenerateRequest) -> None:
        try:
            engine.add_request(request)
        except Exception as exc:
            self._fail(request.request_id, exc)

    def _run(self) -> None:
        engine = self.engine
        while True:
            with self._cond:
                while not self._inbox and not self._stopping and not engine.has_unfinished():
                    self._cond.wait()
                if self._stopping:
                    return
                inbox, self._inbox = self._inbox, []
            for command in inbox:
                command(engine)
            if not engine.has_unfinished():
                continue
            try:
                outputs = engine.step()
            except Exception as exc:  # a failed step fails every request in it, not the engine
                for rid in engine.request_ids():
                    engine.abort(rid)
                    self._fail(rid, EngineError(f"engine step failed: {exc!r}"))
                continue
            self._deliver(outputs)

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        if outputs and self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch, outputs)

    def _fail(self, request_id: str, exc: BaseException) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch_error, request_id, exc)

    def _dispatch(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            queue = self._streams.get(out.request_id)
            if queue is not None:  # None: the consumer left; its abort is queued
                queue.put_nowait(out)

    def _dispatch_error(self, request_id: str, exc: BaseException) -> None:
        queue = self._streams.get(request_id)
        if queue is not None:
            queue.put_nowait(exc)
