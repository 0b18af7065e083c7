"""LLMEngine on the real SmolLM2-135M-Instruct (slow): batching and caching change nothing, text is whole."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.engine.config import EngineConfig
from modelyard.engine.core import LLMEngine
from modelyard.engine.request import FinishReason, GenerateRequest, SamplingParams

from .core_fixtures import assert_no_leak, run_staggered

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Name three colours.",
    "Say hello in Japanese and Chinese, with the characters.",
]


def chat(loaded: Any, text: str) -> list[int]:
    ids = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
    )
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def engine(loaded: Any, **kw: Any) -> LLMEngine:
    cfg: dict[str, Any] = dict(dtype="float32", device="cpu", num_kv_blocks=512)
    cfg.update(kw)
    return LLMEngine(loaded, EngineConfig(**cfg))


def req(rid: str, prompt: list[int], **kw: Any) -> GenerateRequest:
    kw.setdefault("max_tokens", 24)
    return GenerateRequest(rid, prompt, SamplingParams(temperature=0.0, **kw))


def test_batched_cached_chunked_equal_alone(smollm2_loaded: Any) -> None:
    reqs = [req(f"q{i}", chat(smollm2_loaded, q)) for i, q in enumerate(QUESTIONS)]
    alone = {
        r.request_id: engine(smollm2_loaded, enable_prefix_caching=False).generate([r])[r.request_id]
        for r in reqs
    }
    eng = engine(smollm2_loaded, max_num_batched_tokens=16, num_kv_blocks=16)  # chunks + preemption
    got = run_staggered(eng, reqs, every=2)
    assert got == alone
    assert eng.stats().prefix_cache_hits > 0  # the shared system prompt of the chat template
    assert_no_leak(eng)
    text = smollm2_loaded.tokenizer.decode(alone["q0"][0], skip_special_tokens=True)
    assert "Paris" in text


def test_streamed_text_is_whole_and_stops_exactly(smollm2_loaded: Any) -> None:
    eng = engine(smollm2_loaded)
    prompt = chat(smollm2_loaded, QUESTIONS[3])
    eng.add_request(req("full", prompt, max_tokens=40))
    outs = []
    while eng.has_unfinished():
        outs += eng.step()
    ids = [t for o in outs for t in o.token_ids]
    # max_tokens may end inside a character: that partial tail is never emitted.
    full = smollm2_loaded.tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")
    assert "".join(o.text for o in outs) == full
    assert all("\ufffd" not in o.text for o in outs)
    assert any(ord(c) > 0x2E80 for c in full)  # CJK really was generated
    cut = full[len(full) // 3 : len(full) // 3 + 3]
    eng.add_request(req("stop", prompt, max_tokens=40, stop=[cut]))
    outs = []
    while eng.has_unfinished():
        outs += eng.step()
    assert outs[-1].finish_reason is FinishReason.STOP
    assert "".join(o.text for o in outs) == full[: full.index(cut)]
