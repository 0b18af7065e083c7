"""Paged KV-cache bookkeeping: fixed-size blocks, per-sequence block tables, ref counts, prefix cache.

Only ids are managed here; the K/V tensors live in the model runner. A block is *free* when its ref
count is 0. Free blocks sit in one LRU queue: blocks without a hash at the front (useless, reused
first), blocks with a hash at the back, so a freed prompt block stays findable by its hash until a
new block is needed and it is the least recently freed.

Prefix caching: a full, computed block is keyed by a chained hash of (parent block's hash, the
block's token ids, adapter id, cache salt), so a hit at block ``i`` implies the whole prefix up to
``i`` matches, and requests with a different salt or adapter never share blocks. A lookup never
covers the whole token list: the last token is always recomputed so the step yields logits.

``n > 1`` choices: the children fork from the parent once its prompt is computed, sharing (ref
count + 1) the prompt's full blocks except the one holding the last prompt token; each child
recomputes the tail itself (< one block + 1 token) into blocks of its own. No block is ever written
by two sequences, so no copy-on-write is needed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from modelyard.engine.sequence import Sequence


def block_hash(parent: bytes | None, token_ids: list[int], lora_id: int, cache_salt: str | None) -> bytes:
    """The prefix-cache key of a full block (chained on its parent's key)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(parent or b"root")
    h.update(f"|{lora_id}|{cache_salt or ''}|".encode())
    h.update(",".join(map(str, token_ids)).encode())
    return h.digest()


class BlockManager:
    """Allocates KV blocks to sequences and keeps the prefix-cache index.

    Invariants: every block is either referenced (``ref_count > 0``) or in the free queue; a block
    in ``_hash_to_block`` has that hash in ``_block_hash``; ``num_free_blocks`` counts every block a
    new allocation may take (including cached ones, which it evicts).
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = [0] * num_blocks
        self._block_hash: list[bytes | None] = [None] * num_blocks
        self._hash_to_block: dict[bytes, int] = {}
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.prefix_queries = 0
        self.prefix_hits = 0

    # ---- accounting -------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks referenced by some sequence (cached-but-free blocks count as free)."""
        return 1.0 - len(self._free) / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # ---- prefix cache -----------------------------------------------------------------------
    def lookup_prefix(self, seq: Sequence) -> list[int]:
        """Cached blocks holding the longest computed prefix of ``seq`` (not yet taken).

        At most ``(len(seq) - 1) // block_size`` blocks, so at least one token is left to compute.
        The caller records the lookup with :meth:`record_lookup` once the sequence is admitted.
        """
        max_blocks = (len(seq.token_ids) - 1) // self.block_size
        if not self.enable_prefix_caching:
            return []
        hits: list[int] = []
        parent: bytes | None = None
        bs = self.block_size
        for i in range(max_blocks):
            h = block_hash(parent, seq.token_ids[i * bs : (i + 1) * bs], seq.lora_id, seq.cache_salt)
            block = self._hash_to_block.get(h)
            if block is None:
                break
            hits.append(block)
            parent = h
        return hits

    def record_lookup(self, queried_tokens: int, hit_tokens: int) -> None:
        """Count one admitted prefix-cache lookup (in tokens), as vLLM's prefix_cache_* counters do."""
        self.prefix_queries += queried_tokens
        self.prefix_hits += hit_tokens

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Register the blocks of ``seq`` that became full and computed since the last call."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        num_full = seq.num_computed_tokens // bs
        hashes = seq.block_hashes
        for i in range(len(hashes), num_full):
            parent = hashes[-1] if hashes else None
            h = block_hash(parent, seq.token_ids[i * bs : (i + 1) * bs], seq.lora_id, seq.cache_salt)
            hashes.append(h)
            block = seq.block_table[i]
            # Two sequences may compute the same prefix at once; the first one registered wins and
            # the other block simply stays unshared.
            if h not in self._hash_to_block and self._block_hash[block] is None:
                self._hash_to_block[h] = block
                self._block_hash[block] = h

    # ---- allocation -------------------------------------------------------------------------
    def allocate(self, seq: Sequence, num_new_tokens: int, cached: list[int] | None = None) -> bool:
        """Give ``seq`` the blocks for ``num_new_tokens`` more tokens; ``False`` (no change) if short.

        ``cached`` (for a sequence holding no blocks yet) are blocks from :meth:`lookup_prefix`:
        they are taken first and ``seq.num_computed_tokens`` jumps past them.
        """
        cached = cached or []
        if cached and seq.block_table:
            raise ValueError("cached prefix blocks can only be given to a sequence holding no blocks")
        computed = seq.num_computed_tokens + len(cached) * self.block_size
        need = self.blocks_needed(computed + num_new_tokens) - len(seq.block_table) - len(cached)
        # A cached block with no references sits in the free queue: taking it uses up a free block.
        reclaimed = sum(1 for b in cached if self._ref[b] == 0)
        if need > len(self._free) - reclaimed:
            return False
        for b in cached:
            if self._ref[b] == 0:
                del self._free[b]
            self._ref[b] += 1
        if cached:
            seq.block_table.extend(cached)
            seq.block_hashes.extend(self._block_hash[b] for b in cached)  # type: ignore[misc]
            seq.num_computed_tokens = computed
        for _ in range(max(need, 0)):
            seq.block_table.append(self._take_free())
        return True

    def _take_free(self) -> int:
        block, _ = self._free.popitem(last=False)
        h = self._block_hash[block]
        if h is not None:  # evict its prefix-cache entry
            self._block_hash[block] = None
            if self._hash_to_block.get(h) == block:
                del self._hash_to_block[h]
        self._ref[block] = 1
        return block

    def free(self, seq: Sequence) -> None:
        """Drop ``seq``'s references; it holds no blocks and has nothing computed afterwards.

        Tail blocks are freed first so that, among blocks freed together, prefix blocks are the
        last to be evicted.
        """
        for block in reversed(seq.block_table):
            self._ref[block] -= 1
            if self._ref[block] == 0:
                self._free[block] = None
                if self._block_hash[block] is None:
                    self._free.move_to_end(block, last=False)
            elif self._ref[block] < 0:
                raise AssertionError(f"block {block} freed twice")
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0

    def fork(self, parent: Sequence, child: Sequence) -> None:
        """Share the parent's computed prompt blocks with a child (see the module docstring)."""
        if child.block_table:
            raise ValueError("fork target already holds blocks")
        k = min(
            (parent.num_prompt_tokens - 1) // self.block_size, parent.num_computed_tokens // self.block_size
        )
        shared = parent.block_table[:k]
        for b in shared:
            self._ref[b] += 1
        child.block_table = list(shared)
        child.block_hashes = list(parent.block_hashes[:k])
        child.num_computed_tokens = k * self.block_size

    def ref_count(self, block: int) -> int:
        return self._ref[block]

    def check_consistency(self) -> None:
        """Raise if the free queue and the ref counts disagree (used by tests after every request)."""
        for b in range(self.num_blocks):
            in_free = b in self._free
            if in_free != (self._ref[b] == 0) or self._ref[b] < 0:
                raise AssertionError(f"block {b}: ref={self._ref[b]} in_free={in_free}")
        for h, b in self._hash_to_block.items():
            if self._block_hash[b] != h:
                raise AssertionError(f"hash index points at block {b} which has another hash")
