"""Scheduler + block manager driven by a fake model that reads its context back from a paged "KV cache".

The fake model writes each computed token into its slot and computes the next token from what it
reads back through the block table, so a wrong block table, a block shared when it should not be,
or a position computed twice into another sequence's block changes the output. The reference is
the same function applied to the plain token list.
"""

from __future__ import annotations

import random

import pytest

from modelyard.engine.kv_cache import BlockManager
from modelyard.engine.request import SamplingParams
from modelyard.engine.scheduler import Scheduler
from modelyard.engine.sequence import Sequence, SequenceStatus


def next_token(ctx: list[int]) -> int:
    return (sum(ctx[-5:]) * 31 + len(ctx) * 7 + ctx[0]) % 101


def reference(prompt: list[int], max_tokens: int) -> list[int]:
    toks = list(prompt)
    for _ in range(max_tokens):
        toks.append(next_token(toks))
    return toks[len(prompt) :]


class FakeEngine:
    def __init__(
        self,
        num_blocks: int,
        block_size: int = 4,
        budget: int = 64,
        max_seqs: int = 8,
        caching: bool = True,
        max_loras: int = 8,
        threshold: int = 0,
    ) -> None:
        self.bm = BlockManager(num_blocks, block_size, caching)
        self.sched = Scheduler(
            self.bm,
            max_num_seqs=max_seqs,
            max_num_batched_tokens=budget,
            max_loras=max_loras,
            long_prefill_token_threshold=threshold,
        )
        self.kv: dict[int, tuple[int, int]] = {}
        self.next_id = 0
        self.steps: list[list[tuple[Sequence, int]]] = []
        self.preemptions = 0

    def add(
        self,
        prompt: list[int],
        max_tokens: int,
        *,
        n: int = 1,
        priority: int = 0,
        lora: str | None = None,
        salt: str | None = None,
    ) -> list[Sequence]:
        params = SamplingParams(n=n, max_tokens=max_tokens)
        seqs = []
        for i in range(n):
            self.next_id += 1
            seqs.append(
                Sequence(
                    self.next_id,
                    f"r{self.next_id}",
                    i,
                    prompt,
                    params,
                    lora=lora,
                    lora_id=hash(lora) % 1000 if lora else 0,
                    cache_salt=salt,
                    priority=priority,
                    arrival=self.next_id,
                )
            )
        seqs[0].pending_forks = seqs[1:]
        self.sched.add(seqs[0])
        return seqs

    def step(self) -> None:
        out = self.sched.schedule()
        assert out.total_tokens <= self.sched.max_num_batched_tokens
        assert len(self.sched.running) <= self.sched.max_num_seqs
        assert len({s.lora for s in out.seqs if s.lora}) <= self.sched.max_loras
        self.preemptions += len(out.preempted)
        self.steps.append(list(zip(out.seqs, out.num_tokens, strict=True)))
        bs = self.bm.block_size
        samples = [out.samples(i) for i in range(len(out.seqs))]
        for seq, n in zip(out.seqs, out.num_tokens, strict=True):
            for p in range(seq.num_computed_tokens, seq.num_computed_tokens + n):
                self.kv[seq.block_table[p // bs] * bs + p % bs] = (seq.token_ids[p], p)
        sampled = []
        for seq, s in zip(out.seqs, samples, strict=True):
            if s:
                ctx = []
                for p in range(len(seq.token_ids)):
                    tok, pos = self.kv[seq.block_table[p // bs] * bs + p % bs]
                    assert pos == p
                    ctx.append(tok)
                sampled.append((seq, next_token(ctx)))
        self.sched.update(out)
        for seq, tok in sampled:
            if seq.pending_forks and seq.num_computed_tokens >= seq.num_prompt_tokens:
                self.sched.fork(seq)
            seq.token_ids.append(tok)
            if seq.num_output_tokens >= seq.params.max_tokens:
                self.sched.finish(seq)

    def run(self, arrivals: dict[int, list[tuple]] | None = None, max_steps: int = 2000) -> None:
        arrivals = arrivals or {}
        for i in range(max_steps):
            for args in arrivals.get(i, []):
                self.add(*args)
            if not self.sched.has_unfinished() and i > max(arrivals, default=0):
                return
            self.step()
        raise AssertionError("did not finish")


def assert_all_free(eng: FakeEngine) -> None:
    eng.bm.check_consistency()
    assert eng.bm.num_free_blocks == eng.bm.num_blocks


def test_mixed_arrivals_chunking_and_preemption_match_reference() -> None:
    rng = random.Random(0)
    prompts = [[rng.randrange(101) for _ in range(rng.randrange(1, 40))] for _ in range(10)]
    eng = FakeEngine(num_blocks=24, budget=16, max_seqs=6)  # tiny: forces chunks and preemption
    seqs = {}
    for i, p in enumerate(prompts):
        seqs[i] = eng.add(p, 12)[0]
        eng.step()
    eng.run()
    for i, p in enumerate(prompts):
        assert seqs[i].output_token_ids == reference(p, 12)
    assert eng.preemptions > 0
    assert_all_free(eng)


@pytest.mark.parametrize("caching", [True, False])
def test_prefix_cache_sharing_gives_same_tokens(caching: bool) -> None:
    shared = list(range(1, 30))
    eng = FakeEngine(num_blocks=64, caching=caching)
    a = eng.add(shared + [5, 6], 8)[0]
    eng.run()
    b = eng.add(shared + [7], 8)[0]
    eng.run()
    assert a.output_token_ids == reference(shared + [5, 6], 8)
    assert b.output_token_ids == reference(shared + [7], 8)
    assert b.num_cached_tokens == (28 if caching else 0)
    assert eng.bm.prefix_hits == (28 if caching else 0)
    assert_all_free(eng)


def test_decodes_go_first_and_prefill_fills_the_rest() -> None:
    eng = FakeEngine(num_blocks=64, budget=10)
    a, b = eng.add([1, 2, 3], 20)[0], eng.add([4, 5], 20)[0]
    eng.step()  # both prompts
    eng.add(list(range(50)), 5)
    eng.step()
    last = eng.steps[-1]
    assert [(s.seq_id, n) for s, n in last[:2]] == [(a.seq_id, 1), (b.seq_id, 1)]
    assert last[2][1] == 8  # the new prompt takes the rest of the budget


def test_long_prefill_threshold_caps_a_chunk() -> None:
    eng = FakeEngine(num_blocks=64, budget=64, threshold=8)
    eng.add(list(range(40)), 2)
    eng.step()
    assert eng.steps[-1][0][1] == 8


def test_victim_is_latest_arrival_and_goes_back_to_the_head() -> None:
    eng = FakeEngine(num_blocks=12, budget=64, block_size=4)
    a = eng.add([1] * 7, 30)[0]
    b = eng.add([2] * 7, 30)[0]
    c = eng.add([3] * 3, 30)[0]
    while not eng.preemptions:
        eng.step()
    assert b.status is SequenceStatus.WAITING or c.status is SequenceStatus.WAITING
    assert a.status is SequenceStatus.RUNNING
    assert eng.sched.waiting[0].arrival == min(s.arrival for s in eng.sched.waiting)
    eng.run()
    for s, p in ((a, [1] * 7), (b, [2] * 7), (c, [3] * 3)):
        assert s.output_token_ids == reference(p, 30)
    assert_all_free(eng)


def test_priority_orders_admission() -> None:
    eng = FakeEngine(num_blocks=64, max_seqs=1)
    low = eng.add([1, 2], 2, priority=5)[0]
    high = eng.add([3, 4], 2, priority=-1)[0]
    eng.step()
    assert eng.steps[-1][0][0] is high and low.status is SequenceStatus.WAITING


def test_max_loras_limits_distinct_adapters_per_step() -> None:
    eng = FakeEngine(num_blocks=64, max_loras=1)
    a = eng.add([1, 2], 3, lora="x")[0]
    b = eng.add([3, 4], 3, lora="y")[0]
    c = eng.add([5, 6], 3)[0]
    eng.step()
    assert {s.seq_id for s, _ in eng.steps[-1]} == {a.seq_id, c.seq_id}
    eng.run()
    assert b.output_token_ids == reference([3, 4], 3)


def test_n_choices_fork_share_prompt_blocks_and_free_them() -> None:
    prompt = list(range(1, 20))
    eng = FakeEngine(num_blocks=64)
    seqs = eng.add(prompt, 6, n=3)
    eng.step()
    eng.step()
    parent, child = seqs[0], seqs[1]
    assert child.status is SequenceStatus.RUNNING
    assert child.block_table[:4] == parent.block_table[:4]
    assert eng.bm.ref_count(parent.block_table[0]) == 3
    eng.run()
    for s in seqs:
        assert s.output_token_ids == reference(prompt, 6)
    assert_all_free(eng)


@pytest.mark.parametrize("abort_at", [0, 1, 3, 6])
def test_abort_mid_prefill_and_mid_decode_frees_everything(abort_at: int) -> None:
    eng = FakeEngine(num_blocks=64, budget=8)
    seqs = eng.add(list(range(30)), 10, n=2)
    other = eng.add(list(range(5)), 10)[0]
    for _ in range(abort_at):
        eng.step()
    for s in seqs:
        if not s.is_finished:
            eng.sched.finish(s)
    eng.run()
    assert other.output_token_ids == reference(list(range(5)), 10)
    assert_all_free(eng)
