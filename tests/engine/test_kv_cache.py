"""Block manager: allocation, ref counts, chained prefix hashes, LRU eviction, salts and adapters."""

from __future__ import annotations

from modelyard.engine.kv_cache import BlockManager, block_hash
from modelyard.engine.request import SamplingParams
from modelyard.engine.sequence import Sequence


def make_seq(seq_id: int, tokens: list[int], *, salt: str | None = None, lora_id: int = 0) -> Sequence:
    return Sequence(seq_id, f"r{seq_id}", 0, tokens, SamplingParams(), cache_salt=salt, lora_id=lora_id)


def compute(bm: BlockManager, seq: Sequence) -> None:
    """Pretend the model computed everything allocated so far (whole prompt)."""
    cached = bm.lookup_prefix(seq)
    assert bm.allocate(seq, len(seq.token_ids) - len(cached) * bm.block_size, cached)
    seq.num_computed_tokens = len(seq.token_ids)
    bm.cache_full_blocks(seq)


def test_allocate_and_free_return_every_block() -> None:
    bm = BlockManager(8, 4)
    s = make_seq(1, list(range(10)))
    assert bm.allocate(s, 10)
    assert len(s.block_table) == 3 and bm.num_free_blocks == 5
    assert bm.usage == 3 / 8
    bm.free(s)
    assert bm.num_free_blocks == 8 and s.block_table == []
    bm.check_consistency()


def test_allocation_fails_without_side_effects_when_short() -> None:
    bm = BlockManager(2, 4)
    s = make_seq(1, list(range(12)))
    assert not bm.allocate(s, 12)
    assert s.block_table == [] and bm.num_free_blocks == 2


def test_prefix_hit_shares_blocks_and_never_covers_last_token() -> None:
    bm = BlockManager(16, 4)
    a = make_seq(1, list(range(12)))
    compute(bm, a)
    b = make_seq(2, list(range(12)))
    hits = bm.lookup_prefix(b)
    # 12 tokens = 3 full blocks, but the last token must be recomputed: only 2 blocks hit.
    assert hits == a.block_table[:2]
    assert bm.allocate(b, 4, hits)
    assert b.num_computed_tokens == 8
    assert bm.ref_count(a.block_table[0]) == 2
    c = make_seq(3, list(range(8)) + [99, 98, 97, 96, 95])
    assert bm.lookup_prefix(c) == a.block_table[:2]
    d = make_seq(4, [0, 1, 2, 3, 9, 5, 6, 7, 8, 9])
    assert bm.lookup_prefix(d) == a.block_table[:1]  # chained: block 2 differs in its parent


def test_salt_and_adapter_separate_cache_entries() -> None:
    bm = BlockManager(16, 4)
    compute(bm, make_seq(1, list(range(9)), salt="tenant-a"))
    assert len(bm.lookup_prefix(make_seq(2, list(range(9)), salt="tenant-a"))) == 2
    assert bm.lookup_prefix(make_seq(3, list(range(9)), salt="tenant-b")) == []
    assert bm.lookup_prefix(make_seq(4, list(range(9)))) == []
    assert bm.lookup_prefix(make_seq(5, list(range(9)), salt="tenant-a", lora_id=1)) == []
    assert block_hash(None, [1, 2], 0, None) != block_hash(None, [12], 0, None)


def test_freed_blocks_stay_cached_until_evicted_lru() -> None:
    bm = BlockManager(4, 4)
    a = make_seq(1, list(range(9)))  # 3 blocks, 2 full and hashed
    compute(bm, a)
    bm.free(a)
    assert bm.num_free_blocks == 4 and bm.usage == 0.0
    b = make_seq(2, list(range(9)))
    hits = bm.lookup_prefix(b)
    assert len(hits) == 2
    # New blocks come from unhashed free blocks first (2 of them), then evict the LRU hashed one.
    c = make_seq(3, list(range(50, 58)))
    assert bm.allocate(c, 8)
    assert len(bm.lookup_prefix(b)) == 2
    d = make_seq(4, [60, 61, 62, 63])
    assert bm.allocate(d, 4)
    # Tail blocks are freed first, so the first prompt block was freed last and survives longest.
    assert len(bm.lookup_prefix(b)) == 1
    bm.check_consistency()


def test_taking_a_free_cached_block_counts_against_free_space() -> None:
    bm = BlockManager(3, 4)
    a = make_seq(1, list(range(9)))
    compute(bm, a)
    bm.free(a)
    b = make_seq(2, list(range(9)) + list(range(100, 104)))  # 13 tokens: 2 hit + needs 2 more
    hits = bm.lookup_prefix(b)
    assert len(hits) == 2
    assert not bm.allocate(b, 5, hits)  # 2 cached (free) + 2 new > 3 blocks
    bm.check_consistency()
    assert bm.allocate(b, 1, hits)
    assert b.num_computed_tokens == 8 and len(b.block_table) == 3
    bm.check_consistency()


def test_fork_shares_full_prompt_blocks_but_not_the_last() -> None:
    bm = BlockManager(16, 4)
    parent = make_seq(1, list(range(8)))
    compute(bm, parent)
    child = make_seq(2, list(range(8)))
    bm.fork(parent, child)
    assert child.block_table == parent.block_table[:1]  # block 2 holds the last prompt token
    assert child.num_computed_tokens == 4
    assert bm.allocate(child, 4)
    assert child.block_table[1] != parent.block_table[1]
    bm.free(parent)
    bm.free(child)
    assert bm.num_free_blocks == 16
    bm.check_consistency()


def test_prefix_caching_off_never_hits() -> None:
    bm = BlockManager(16, 4, enable_prefix_caching=False)
    compute(bm, make_seq(1, list(range(9))))
    assert bm.lookup_prefix(make_seq(2, list(range(9)))) == []
