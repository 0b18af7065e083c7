"""LLMEngine end to end on the tiny random Llama: batching, caching, preemption and chunking change nothing."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from modelyard.engine.request import FinishReason, GenerateRequest, SamplingParams
from modelyard.errors import ContextLengthExceeded, InvalidRequest

from .core_fixtures import assert_no_leak, greedy, load_tiny, make_engine, prompts, run_staggered

PROMPTS = prompts(8, seed=1)


@pytest.fixture(scope="module")
def tiny_loaded(tiny_llama_dir: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_tiny(tiny_llama_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def alone(tiny_loaded: Any) -> dict[str, list[int]]:
    """Each prompt generated on its own in a fresh engine: the reference."""
    ref = {}
    for i, p in enumerate(PROMPTS):
        engine = make_engine(tiny_loaded, enable_prefix_caching=False)
        ref[f"r{i}"] = engine.generate([greedy(f"r{i}", p)])[f"r{i}"][0]
    return ref


def test_matches_transformers_greedy(tiny_llama_dir: Any, alone: dict[str, list[int]]) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    ids = torch.tensor([PROMPTS[0]])
    ref = hf.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    assert alone["r0"] == ref[0, len(PROMPTS[0]) :].tolist()


def test_batched_staggered_equals_one_at_a_time(tiny_loaded: Any, alone: dict[str, list[int]]) -> None:
    engine = make_engine(tiny_loaded)
    got = run_staggered(engine, [greedy(f"r{i}", p) for i, p in enumerate(PROMPTS)], every=2)
    assert {k: v[0] for k, v in got.items()} == alone
    assert_no_leak(engine)


@pytest.mark.parametrize("caching", [True, False])
def test_prefix_caching_on_equals_off_and_reports_cached_tokens(tiny_loaded: Any, caching: bool) -> None:
    engine = make_engine(tiny_loaded, enable_prefix_caching=caching)
    system = PROMPTS[2] + PROMPTS[3]  # 2 prompts' worth of shared prefix
    first = engine.generate([greedy("a", system + [7, 8, 9])])["a"][0]
    outs = []
    engine.add_request(greedy("b", system + [7, 8, 10]))
    while engine.has_unfinished():
        outs += engine.step()
    usage = outs[-1].usage
    cold = make_engine(tiny_loaded, enable_prefix_caching=False)
    assert first == cold.generate([greedy("a", system + [7, 8, 9])])["a"][0]
    assert [t for o in outs for t in o.token_ids] == cold.generate([greedy("b", system + [7, 8, 10])])["b"][0]
    expected = (len(system) + 2) // 4 * 4 if caching else 0
    assert usage is not None and usage.cached_tokens == expected and usage.prompt_tokens == len(system) + 3
    assert engine.stats().prefix_cache_hits == expected
    assert_no_leak(engine)


def cached_tokens(engine: Any, req: GenerateRequest) -> int:
    engine.add_request(req)
    last = None
    while engine.has_unfinished():
        for o in engine.step():
            last = o
    assert last is not None and last.usage is not None
    return last.usage.cached_tokens


def test_cache_salt_separates_tenants(tiny_loaded: Any) -> None:
    engine = make_engine(tiny_loaded)
    p = PROMPTS[4] + PROMPTS[5]
    assert cached_tokens(engine, greedy("a", p, cache_salt="t1")) == 0
    assert cached_tokens(engine, greedy("b", p, cache_salt="t2")) == 0
    assert cached_tokens(engine, greedy("c", p)) == 0
    assert cached_tokens(engine, greedy("d", p, cache_salt="t1")) > 0


def test_preemption_under_tiny_kv_budget_gives_same_tokens(
    tiny_loaded: Any, alone: dict[str, list[int]]
) -> None:
    engine = make_engine(tiny_loaded, num_kv_blocks=24)  # 96 token slots for 8 requests of up to 51
    got = run_staggered(engine, [greedy(f"r{i}", p) for i, p in enumerate(PROMPTS)], every=1)
    assert engine.stats().num_preemptions > 0
    assert {k: v[0] for k, v in got.items()} == alone
    assert_no_leak(engine)


def test_chunked_prefill_gives_same_tokens(tiny_loaded: Any, alone: dict[str, list[int]]) -> None:
    engine = make_engine(tiny_loaded, max_num_batched_tokens=7, enable_prefix_caching=False)
    sizes: list[int] = []
    got = run_staggered(
        engine,
        [greedy(f"r{i}", p) for i, p in enumerate(PROMPTS)],
        every=3,
        on_step=lambda e, s: sizes.append(e.stats().num_steps),
    )
    assert max(len(p) for p in PROMPTS) > 7  # prompts really were split over steps
    assert {k: v[0] for k, v in got.items()} == alone
    assert_no_leak(engine)


def sample_req(rid: str, prompt: list[int], seed: int | None, n: int = 1) -> GenerateRequest:
    return GenerateRequest(
        rid, prompt, SamplingParams(n=n, max_tokens=10, temperature=1.0, seed=seed, ignore_eos=True)
    )


def test_same_seed_same_sample_whatever_the_batch(tiny_loaded: Any) -> None:
    p = PROMPTS[6]
    solo = make_engine(tiny_loaded).generate([sample_req("x", p, 42)])["x"][0]
    crowd = make_engine(tiny_loaded, seed=123)
    others = [sample_req(f"o{i}", q, None) for i, q in enumerate(PROMPTS[:5])]
    got = run_staggered(crowd, [*others[:2], sample_req("x", p, 42), *others[2:]], every=1)
    assert got["x"][0] == solo
    other_seed = make_engine(tiny_loaded).generate([sample_req("y", p, 43)])["y"][0]
    assert other_seed != solo


def test_n_choices_share_prompt_and_free_blocks(tiny_loaded: Any) -> None:
    engine = make_engine(tiny_loaded)
    p = PROMPTS[7] + PROMPTS[0]
    got = engine.generate([sample_req("x", p, 7, n=3)])["x"]
    assert len(got) == 3 and all(len(c) == 10 for c in got) and len({tuple(c) for c in got}) > 1
    again = make_engine(tiny_loaded).generate([sample_req("x", p, 7, n=3)])["x"]
    assert again == got
    greedy_n = make_engine(tiny_loaded).generate(
        [GenerateRequest("g", p, SamplingParams(n=2, max_tokens=8, temperature=0.0, ignore_eos=True))]
    )["g"]
    assert greedy_n[0] == greedy_n[1]
    assert_no_leak(engine)


@pytest.mark.parametrize("abort_step", [0, 1, 2, 5])
def test_abort_mid_prefill_and_decode_frees_blocks(tiny_loaded: Any, abort_step: int) -> None:
    engine = make_engine(tiny_loaded, max_num_batched_tokens=8)
    long_prompt = PROMPTS[0] + PROMPTS[1] + PROMPTS[2]
    engine.add_request(sample_req("victim", long_prompt, 1, n=2))
    engine.add_request(greedy("other", PROMPTS[3]))
    for _ in range(abort_step):
        engine.step()
    closing = engine.abort("victim")
    assert {o.finish_reason for o in closing} == {FinishReason.ABORT}
    assert closing[-1].usage is not None
    assert engine.abort("victim") == []
    while engine.has_unfinished():
        engine.step()
    assert_no_leak(engine)


def test_finish_reasons_logprobs_and_usage(tiny_loaded: Any) -> None:
    engine = make_engine(tiny_loaded)
    p = PROMPTS[1]
    req = GenerateRequest("l", p, SamplingParams(max_tokens=5, temperature=0.0, logprobs=2, ignore_eos=True))
    engine.add_request(req)
    outs = []
    while engine.has_unfinished():
        outs += engine.step()
    assert [o.finish_reason for o in outs] == [None] * 4 + [FinishReason.LENGTH]
    assert outs[-1].usage is not None and outs[-1].usage.completion_tokens == 5
    for o in outs:
        lp = o.logprobs[0]  # type: ignore[index]
        assert lp.token_id == o.token_ids[0] and lp.logprob <= 0 and len(lp.top) == 2
        assert lp.top[0][0] == lp.token_id and math.isclose(lp.top[0][2], lp.logprob)  # greedy = top-1
    stop_on = outs[2].token_ids[0]
    engine.add_request(
        GenerateRequest("s", p, SamplingParams(max_tokens=5, temperature=0.0, stop_token_ids=[stop_on]))
    )
    outs = []
    while engine.has_unfinished():
        outs += engine.step()
    assert outs[-1].finish_reason is FinishReason.STOP and len(outs) <= 3


def test_rejects_bad_requests(tiny_loaded: Any) -> None:
    engine = make_engine(tiny_loaded, max_model_len=32)
    with pytest.raises(ContextLengthExceeded):
        engine.add_request(greedy("long", list(range(5, 40))))
    with pytest.raises(InvalidRequest):
        engine.add_request(GenerateRequest("t", [5, 6], SamplingParams(top_p=0.0)))
    with pytest.raises(InvalidRequest):
        engine.add_request(GenerateRequest("e", [], SamplingParams()))
    out = engine.generate([greedy("fits", list(range(5, 25)), max_tokens=50)])["fits"][0]
    assert len(out) == 32 - 20  # stopped at max_model_len with reason length


def test_queue_time_is_observed_once_per_request(tiny_loaded: Any) -> None:
    engine = make_engine(tiny_loaded, max_num_seqs=2)  # the third request waits for a free slot
    reqs = [
        GenerateRequest(f"q{i}", PROMPTS[i], SamplingParams(max_tokens=4, temperature=0.0)) for i in range(3)
    ]
    engine.generate(reqs)
    stats = engine.stats()
    assert sum(stats.queue_time_counts) == 3  # once each, however many steps a request ran
    assert 0.0 <= stats.queue_time_sum < 60.0
