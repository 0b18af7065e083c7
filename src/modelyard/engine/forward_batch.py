"""The contract between the model runner and the models: one step's tokens, flattened.

The runner builds a :class:`ForwardBatch` from the scheduled sequences; a model's
``forward(batch, kv_caches)`` writes every token's K/V into the paged cache at ``slot_mapping``
and attends over each sequence's blocks. Sequences appear in the batch one after another; a
sequence contributes ``query_lens[i]`` consecutive tokens (1 for a decode, a chunk for a prefill).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(slots=True)
class ForwardBatch:
    """Inputs of one forward pass over ``T`` tokens from ``S`` sequences.

    - ``input_ids``, ``positions``: ``[T]`` int64.
    - ``slot_mapping``: ``[T]`` int64, ``block_id * block_size + offset`` where each token's K/V goes.
    - ``query_lens``: ``S`` Python ints, tokens of each sequence in this step (sum is ``T``).
    - ``context_lens``: ``[S]`` int64, tokens in the KV cache for each sequence after this step
      (cached prefix + earlier chunks + this step's tokens).
    - ``block_tables``: ``[S, max_blocks]`` int64, each sequence's block ids, padded with 0.
    - ``logits_indices``: ``[R]`` int64 positions in ``T`` whose logits are wanted (the last token
      of every sequence that samples this step; a mid-prompt chunk samples nothing).
    - ``lora_slots``: ``[T]`` int64 resident-adapter slot per token (0 = no adapter), or ``None``
      when no token in the step uses an adapter (then LoRA costs nothing).
    - ``block_size``: tokens per KV block.
    - ``attn``: derived attention metadata, built once per step by the attention backend
      (``prepare_attention``) and reused by every layer.
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    query_lens: list[int]
    context_lens: torch.Tensor
    block_tables: torch.Tensor
    logits_indices: torch.Tensor
    block_size: int
    lora_slots: torch.Tensor | None = None
    attn: Any = field(default=None)
