"""AsyncEngine: concurrent streams, cancellation frees blocks, the event loop stays responsive."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from modelyard.engine.async_engine import AsyncEngine
from modelyard.engine.request import FinishReason, GenerateRequest, RequestOutput, SamplingParams
from modelyard.errors import ContextLengthExceeded

from .core_fixtures import assert_no_leak, greedy, load_tiny, make_engine, prompts

PROMPTS = prompts(6, seed=3)


@pytest.fixture(scope="module")
def tiny_loaded(tiny_llama_dir: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_tiny(tiny_llama_dir, tmp_path_factory)


async def collect(engine: AsyncEngine, req: GenerateRequest) -> list[RequestOutput]:
    return [out async for out in engine.generate(req)]


async def wait_idle(engine: AsyncEngine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.engine.has_unfinished() or engine._inbox:
        assert time.monotonic() < deadline, "engine did not go idle"
        await asyncio.sleep(0.01)


async def test_concurrent_generate_equals_sync_engine(tiny_loaded: Any) -> None:
    reqs = [greedy(f"r{i}", p, max_tokens=10) for i, p in enumerate(PROMPTS)]
    expected = make_engine(tiny_loaded).generate(reqs)
    engine = AsyncEngine(make_engine(tiny_loaded))
    engine.start()
    try:
        results = await asyncio.gather(*(collect(engine, r) for r in reqs))
    finally:
        await engine.shutdown()
    for req, outs in zip(reqs, results, strict=True):
        assert [t for o in outs for t in o.token_ids] == expected[req.request_id][0]
        assert outs[-1].finish_reason is FinishReason.LENGTH and outs[-1].usage is not None
        assert all(o.usage is None for o in outs[:-1])
        # Random tokens may end inside a multi-byte character: that tail is never emitted.
        full = engine.tokenizer.decode(expected[req.request_id][0], skip_special_tokens=True)
        assert "".join(o.text for o in outs) == full.rstrip("\ufffd")
    assert_no_leak(engine.engine)


async def test_consumer_leaving_aborts_and_frees_blocks(tiny_loaded: Any) -> None:
    engine = AsyncEngine(make_engine(tiny_loaded))
    engine.start()
    try:
        long = GenerateRequest(
            "long", PROMPTS[0], SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
        )
        stream = engine.generate(long)
        got = [await anext(stream) for _ in range(3)]
        assert len(got) == 3
        await stream.aclose()  # consumer stops iterating
        await wait_idle(engine)
        assert engine.stats().num_running == 0
        assert_no_leak(engine.engine)

        async def consume() -> None:
            async for _ in engine.generate(
                GenerateRequest(
                    "cancelled", PROMPTS[1], SamplingParams(max_tokens=500, temperature=0.0, ignore_eos=True)
                )
            ):
                pass

        task = asyncio.create_task(consume())
        while engine.stats().generation_tokens_total < 5:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_idle(engine)
        assert_no_leak(engine.engine)
    finally:
        await engine.shutdown()


async def test_abort_ends_the_stream_with_reason_abort(tiny_loaded: Any) -> None:
    engine = AsyncEngine(make_engine(tiny_loaded))
    engine.start()
    try:
        req = GenerateRequest(
            "x", PROMPTS[2], SamplingParams(max_tokens=500, temperature=0.0, ignore_eos=True)
        )
        outs = []
        async for out in engine.generate(req):
            outs.append(out)
            if len(outs) == 2:
                engine.abort("x")
        assert outs[-1].finish_reason is FinishReason.ABORT and outs[-1].usage is not None
        assert len(outs) < 500
        await wait_idle(engine)
        assert_no_leak(engine.engine)
    finally:
        await engine.shutdown()


async def test_validation_errors_raise_before_streaming(tiny_loaded: Any) -> None:
    engine = AsyncEngine(make_engine(tiny_loaded, max_model_len=16))
    engine.start()
    try:
        with pytest.raises(ContextLengthExceeded):
            await collect(engine, greedy("big", list(range(5, 40))))
        outs = await collect(engine, greedy("ok", [5, 6, 7], max_tokens=3))
        assert len(outs) == 3
    finally:
        await engine.shutdown()


async def test_event_loop_stays_responsive_during_long_prefill(tiny_loaded: Any) -> None:
    engine = AsyncEngine(make_engine(tiny_loaded, max_num_batched_tokens=2048, num_kv_blocks=512))
    engine.start()
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    try:
        tick_task = asyncio.create_task(ticker())
        # Many long prompts: tens of steps of prefill + decode on the engine thread.
        reqs = [
            greedy(f"p{i}", [5 + (i * 7 + j) % 290 for j in range(200)], max_tokens=80) for i in range(16)
        ]
        start = time.monotonic()
        await asyncio.gather(*(collect(engine, r) for r in reqs))
        elapsed = time.monotonic() - start
        stop.set()
        await tick_task
    finally:
        await engine.shutdown()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert elapsed > 0.1 and len(ticks) > elapsed / 0.01 * 0.3, (elapsed, len(ticks))
    assert max(gaps) < 0.25, max(gaps)


async def test_idle_engine_thread_sleeps(tiny_loaded: Any) -> None:
    engine = AsyncEngine(make_engine(tiny_loaded))
    engine.start()
    try:
        await collect(engine, greedy("a", [5, 6, 7], max_tokens=2))
        steps = engine.stats().num_steps
        cpu = time.process_time()  # every thread of the process: a busy-waiting engine thread shows
        await asyncio.sleep(0.5)
        assert time.process_time() - cpu < 0.1
        assert engine.stats().num_steps == steps
        assert engine.running
    finally:
        await engine.shutdown()
    assert not engine.running
