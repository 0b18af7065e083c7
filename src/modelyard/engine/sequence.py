"""One choice of one request as the scheduler, the block manager and the runner see it."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from modelyard.engine.request import FinishReason, SamplingParams

if TYPE_CHECKING:
    import torch


class SequenceStatus(enum.Enum):
    """Where a sequence is: queued (holding no KV blocks), running, or done."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    """The token state of one choice.

    ``token_ids`` is prompt + generated tokens. ``num_computed_tokens`` of them have their K/V in
    the cache (the rest are computed by coming steps); after preemption it drops to 0 and every
    token is recomputed. ``block_table`` lists the KV blocks, ``block_hashes`` the chained hashes of
    its full, computed blocks (prefix-cache keys). A parent of ``n > 1`` choices keeps the
    children (``pending_forks``) until its prompt is computed; then they share its prompt blocks.
    """

    __slots__ = (
        "seq_id",
        "request_id",
        "index",
        "token_ids",
        "num_prompt_tokens",
        "params",
        "lora",
        "lora_id",
        "cache_salt",
        "priority",
        "arrival",
        "status",
        "num_computed_tokens",
        "num_cached_tokens",
        "block_table",
        "block_hashes",
        "finish_reason",
        "generator",
        "detok",
        "pending_forks",
        "output_logprobs",
    )

    def __init__(
        self,
        seq_id: int,
        request_id: str,
        index: int,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        lora: str | None = None,
        lora_id: int = 0,
        cache_salt: str | None = None,
        priority: int = 0,
        arrival: int = 0,
    ) -> None:
        self.seq_id = seq_id
        self.request_id = request_id
        self.index = index
        self.token_ids: list[int] = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.params = params
        self.lora = lora
        self.lora_id = lora_id
        self.cache_salt = cache_salt
        self.priority = priority
        self.arrival = arrival
        self.status = SequenceStatus.WAITING
        self.num_computed_tokens = 0
        # Prompt tokens found in the prefix cache at first admission; None until admitted.
        self.num_cached_tokens: int | None = None
        self.block_table: list[int] = []
        self.block_hashes: list[bytes] = []
        self.finish_reason: FinishReason | None = None
        self.generator: torch.Generator | None = None
        self.detok: Any = None
        self.pending_forks: list[Sequence] = []
        self.output_logprobs: list[Any] = []

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return (
            f"Sequence({self.request_id}#{self.index}, {self.status.value}, "
            f"len={len(self.token_ids)}, computed={self.num_computed_tokens}, blocks={len(self.block_table)})"
        )

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """Scheduling order: lower priority value first, then earlier arrival, then choice index."""
        return (self.priority, self.arrival, self.index)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_uncomputed(self) -> int:
        """Tokens still to run through the model before this sequence can sample again."""
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED
