"""Sampler: greedy, truncation, penalties against references, per-request seeds, logprobs."""

from __future__ import annotations

import math

import torch

from modelyard.engine.request import SamplingParams
from modelyard.engine.sampler import Sampler, make_generator
from modelyard.engine.sequence import Sequence

CPU = torch.device("cpu")
V = 50


def seq(
    params: SamplingParams, prompt: list[int] | None = None, output: list[int] | None = None, index: int = 0
) -> Sequence:
    s = Sequence(1, "r", index, prompt or [1, 2, 3], params)
    s.token_ids.extend(output or [])
    if params.seed is not None:
        s.generator = make_generator(params.seed, index, CPU)
    return s


def test_greedy_is_argmax() -> None:
    logits = torch.randn(4, V, generator=torch.Generator().manual_seed(0))
    out = Sampler(CPU, seed=0)(logits, [seq(SamplingParams(temperature=0.0)) for _ in range(4)])
    assert out.token_ids == logits.argmax(-1).tolist()
    assert out.logprobs == [None] * 4


def test_seed_is_reproducible_whatever_the_batch() -> None:
    torch.manual_seed(1)
    steps = [torch.randn(6, V) for _ in range(5)]
    params = SamplingParams(temperature=1.0, seed=1234)

    def run(batch_rows: list[int], seed: int) -> list[int]:
        s = seq(SamplingParams(temperature=1.0, seed=seed))
        others = [seq(SamplingParams(temperature=0.7)) for _ in batch_rows]
        sampler = Sampler(CPU)
        got = []
        for logits in steps:
            rows = torch.cat([logits[:1], logits[1 : 1 + len(batch_rows)]])
            got.append(sampler(rows, [s, *others]).token_ids[0])
        return got

    alone, crowded = run([], params.seed), run([1, 2, 3, 4, 5], params.seed)  # type: ignore[arg-type]
    assert alone == crowded
    assert run([1, 2], 99) != alone or run([1, 2], 7) != alone


def test_n_choices_with_one_seed_draw_different_streams() -> None:
    a, b = make_generator(5, 0, CPU), make_generator(5, 1, CPU)
    assert not torch.equal(torch.rand(8, generator=a), torch.rand(8, generator=b))


def test_samples_follow_the_distribution() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 20000
    logits = probs.log().expand(rows, 4).clone()
    out = Sampler(CPU, seed=3)(logits, [seq(SamplingParams(temperature=1.0))] * rows)
    freq = torch.bincount(torch.tensor(out.token_ids), minlength=4).float() / rows
    assert torch.allclose(freq, probs, atol=0.015), freq


def test_temperature_sharpens() -> None:
    logits = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(4000, 4).clone()
    out = Sampler(CPU, seed=4)(logits, [seq(SamplingParams(temperature=0.25))] * 4000)
    expected = math.exp(4) / (math.exp(4) + 3)
    assert abs(out.token_ids.count(0) / 4000 - expected) < 0.02


def test_top_k_top_p_min_p_restrict_support() -> None:
    probs = torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04])
    logits = probs.log().expand(3000, 5).clone()
    cases = [
        (SamplingParams(top_k=2), {0, 1}),
        (SamplingParams(top_p=0.65), {0, 1}),
        (SamplingParams(top_p=0.75), {0, 1, 2}),
        (SamplingParams(min_p=0.6), {0, 1}),  # 0.2 < 0.6 * 0.4
        (SamplingParams(top_k=1), {0}),
    ]
    for params, support in cases:
        out = Sampler(CPU, seed=5)(logits, [seq(params)] * 3000)
        assert set(out.token_ids) == support, (params, set(out.token_ids))


def test_mixed_rows_use_their_own_parameters() -> None:
    logits = torch.tensor([[0.0, 3.0, 2.9, 2.8]]).expand(3, 4).clone()
    rows = [seq(SamplingParams(temperature=0.0)), seq(SamplingParams(top_k=1)), seq(SamplingParams(top_k=3))]
    for _ in range(20):
        out = Sampler(CPU)(logits, rows)
        assert out.token_ids[:2] == [1, 1] and out.token_ids[2] in (1, 2, 3)


def test_repetition_penalty_matches_transformers() -> None:
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(6)
    logits = torch.randn(2, V)
    prompt, output = [3, 4, 5], [7, 3, 9]
    rows = [seq(SamplingParams(temperature=0.0, repetition_penalty=1.7), prompt, output)] * 2
    sampler = Sampler(CPU)
    got = logits.clone()
    sampler._penalize(got, rows, V)
    ref = RepetitionPenaltyLogitsProcessor(1.7)(torch.tensor([prompt + output] * 2), logits.clone())
    assert torch.allclose(got, ref)


def test_presence_and_frequency_penalties_match_openai_formula() -> None:
    torch.manual_seed(7)
    logits = torch.randn(1, V)
    output = [7, 7, 9]
    s = seq(SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), [7, 11], output)
    got = logits.clone()
    Sampler(CPU)._penalize(got, [s], V)
    ref = logits.clone()
    for tok in set(output):
        ref[0, tok] -= 0.25 * output.count(tok) + 0.5
    assert torch.allclose(got, ref)  # prompt token 11 is untouched


def test_logprobs_are_raw_log_softmax_with_top_alternatives() -> None:
    torch.manual_seed(8)
    logits = torch.randn(2, V)
    rows = [
        seq(SamplingParams(temperature=0.0, logprobs=3)),
        seq(SamplingParams(temperature=0.5, logprobs=0)),
    ]
    out = Sampler(CPU, seed=0)(logits, rows)
    ref = torch.log_softmax(logits, -1)
    for r in range(2):
        assert out.logprobs[r] == ref[r, out.token_ids[r]].item()
    top = out.top_logprobs[0]
    assert top is not None and [t for t, _ in top] == ref[0].topk(3).indices.tolist()
    assert out.top_logprobs[1] == []
