"""Fixtures and drivers for the engine-core tests (imported by test_core / test_async_engine)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from modelyard.engine.config import EngineConfig
from modelyard.engine.core import LLMEngine
from modelyard.engine.request import GenerateRequest, SamplingParams


def load_tiny(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny random model folder loaded in float32 (test modules wrap this in a module fixture)."""
    from modelyard.engine.loader import load_model

    return load_model(folder, cache_dir=tmp_path_factory.mktemp("cache"), dtype=torch.float32)


def make_engine(loaded: Any, **overrides: Any) -> LLMEngine:
    cfg: dict[str, Any] = dict(dtype="float32", device="cpu", num_kv_blocks=256, block_size=4, seed=0)
    cfg.update(overrides)
    return LLMEngine(loaded, EngineConfig(**cfg))


def prompts(n: int, seed: int = 0, lo: int = 3, hi: int = 40, vocab: int = 300) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(5, vocab) for _ in range(rng.randrange(lo, hi))] for _ in range(n)]


def greedy(request_id: str, prompt: list[int], max_tokens: int = 12, **kw: Any) -> GenerateRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    return GenerateRequest(request_id, prompt, params, **kw)


def run_staggered(
    engine: LLMEngine, requests: list[GenerateRequest], every: int = 1, on_step: Any = None
) -> dict[str, list[list[int]]]:
    """Add one request every ``every`` steps while stepping; token ids per request and choice."""
    pending = list(requests)
    tokens: dict[str, list[list[int]]] = {}
    step = 0
    while pending or engine.has_unfinished():
        if pending and step % every == 0:
            r = pending.pop(0)
            engine.add_request(r)
            tokens[r.request_id] = [[] for _ in range(r.params.n)]
        for out in engine.step():
            if out.request_id in tokens:
                tokens[out.request_id][out.index].extend(out.token_ids)
        if on_step is not None:
            on_step(engine, step)
        step += 1
    return tokens


def assert_no_leak(engine: LLMEngine) -> None:
    bm = engine.block_manager
    bm.check_consistency()
    assert bm.num_free_blocks == bm.num_blocks, "blocks still referenced after every request ended"
    assert not engine.has_unfinished()
