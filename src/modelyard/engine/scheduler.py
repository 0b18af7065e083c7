"""Continuous batching: which sequences run in the next step, and how many tokens each.

Each step has a token budget (``max_num_batched_tokens``). It is spent in this order:

1. running sequences that decode (one token each), in priority order;
2. running sequences still prefilling (chunks of their remaining prompt);
3. waiting sequences (new, or preempted earlier), in priority order, with their prefix-cache hits;
   they are admitted only while there is budget, KV room, a free seat (``max_num_seqs``, counting
   every ``n`` choice) and, for an adapter, a free adapter seat (``max_loras`` distinct per step).
   Waiting sequences are not admitted in a step that preempted.

Order is (priority, arrival): lower priority values first, FCFS among equals. When a running
sequence needs a block and none is free, the scheduler preempts by recompute: the victim (the
latest in that order among running sequences not yet scheduled this step, possibly the sequence
itself) loses its blocks and goes back to the waiting queue, where its original arrival puts it
ahead of later requests. When it is admitted again it recomputes prompt + generated tokens (with
prefix-cache hits, often on its own freed blocks) and then continues sampling.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from modelyard.engine.kv_cache import BlockManager
from modelyard.engine.sequence import Sequence, SequenceStatus


@dataclass(slots=True)
class SchedulerOutput:
    """One step's work: ``seqs[i]`` runs ``num_tokens[i]`` tokens from its ``num_computed_tokens``."""

    seqs: list[Sequence] = field(default_factory=list)
    num_tokens: list[int] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(self.num_tokens)

    def samples(self, i: int) -> bool:
        """Whether ``seqs[i]`` reaches its last token this step (so it samples a new one)."""
        seq = self.seqs[i]
        return seq.num_computed_tokens + self.num_tokens[i] == len(seq.token_ids)


class Scheduler:
    """Holds the waiting and running queues; the engine calls :meth:`schedule` then :meth:`update`."""

    def __init__(
        self,
        block_manager: BlockManager,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        max_loras: int = 8,
        long_prefill_token_threshold: int = 0,
    ) -> None:
        self.bm = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_loras = max_loras
        self.chunk_limit = long_prefill_token_threshold or max_num_batched_tokens
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []

    # ---- queues -------------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        """Queue a sequence that holds no blocks."""
        seq.status = SequenceStatus.WAITING
        bisect.insort(self.waiting, seq, key=lambda s: s.sort_key)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence) -> None:
        """Take ``seq`` (and any children not yet forked) out of the queues and free its blocks."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self.bm.free(seq)
        seq.status = SequenceStatus.FINISHED
        for child in seq.pending_forks:
            child.status = SequenceStatus.FINISHED
        seq.pending_forks = []

    def _seats_taken(self) -> int:
        return sum(1 + len(s.pending_forks) for s in self.running)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.bm.free(seq)
        self.add(seq)

    def _admit(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.RUNNING
        bisect.insort(self.running, seq, key=lambda s: s.sort_key)

    # ---- the step -----------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        """Pick this step's sequences and token counts, allocating their KV blocks."""
        out = SchedulerOutput()
        scheduled: set[int] = set()
        budget = self.max_num_batched_tokens

        def run(seq: Sequence, n: int) -> bool:
            """Allocate ``n`` tokens for a running ``seq``, preempting others; False if it was preempted."""
            while not self.bm.allocate(seq, n):
                victim = max((s for s in self.running if s.seq_id not in scheduled), key=lambda s: s.sort_key)
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is seq:
                    return False
            out.seqs.append(seq)
            out.num_tokens.append(n)
            scheduled.add(seq.seq_id)
            return True

        for seq in list(self.running):  # decodes first
            if budget == 0:
                break
            if seq.status is SequenceStatus.RUNNING and seq.num_uncomputed == 1 and run(seq, 1):
                budget -= 1
        for seq in list(self.running):  # then running prefills, chunked
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING or seq.seq_id in scheduled or seq.num_uncomputed < 2:
                continue
            n = min(seq.num_uncomputed, budget, self.chunk_limit)
            if run(seq, n):
                budget -= n
        if not out.preempted:
            budget = self._admit_waiting(out, budget)
        return out

    def _admit_waiting(self, out: SchedulerOutput, budget: int) -> int:
        active_loras = {s.lora for s in self.running if s.lora is not None}
        seats = self._seats_taken()
        bs = self.bm.block_size
        i = 0
        while i < len(self.waiting) and budget > 0:
            seq = self.waiting[i]
            if seq.lora is not None and seq.lora not in active_loras and len(active_loras) >= self.max_loras:
                i += 1  # another adapter may not fit this step; later requests may
                continue
            need_seats = 1 + len(seq.pending_forks)
            if seats + need_seats > self.max_num_seqs:
                break
            cached = self.bm.lookup_prefix(seq)
            n = min(len(seq.token_ids) - len(cached) * bs, budget, self.chunk_limit)
            if not self.bm.allocate(seq, n, cached):
                break
            self.bm.record_lookup(len(seq.token_ids), len(cached) * bs)
            if seq.num_cached_tokens is None:
                seq.num_cached_tokens = len(cached) * bs
            del self.waiting[i]
            self._admit(seq)
            seats += need_seats
            if seq.lora is not None:
                active_loras.add(seq.lora)
            out.seqs.append(seq)
            out.num_tokens.append(n)
            budget -= n
        return budget

    def update(self, out: SchedulerOutput) -> None:
        """Mark the step's tokens computed and register newly full blocks in the prefix cache.

        Call after the forward pass, before appending sampled tokens.
        """
        for seq, n in zip(out.seqs, out.num_tokens, strict=True):
            seq.num_computed_tokens += n
            self.bm.cache_full_blocks(seq)

    def fork(self, parent: Sequence) -> list[Sequence]:
        """Start the parent's pending ``n > 1`` children, sharing its computed prompt blocks.

        Call once the parent's prompt is computed. The children join the running queue and
        recompute their prompt tail in the next step.
        """
        children, parent.pending_forks = parent.pending_forks, []
        for child in children:
            self.bm.fork(parent, child)
            child.num_cached_tokens = 0
            self._admit(child)
        return children
