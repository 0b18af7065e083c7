"""Runs one scheduled step on the model: ForwardBatch in, sampled tokens out.

Owns the paged KV cache tensors (one ``(k, v)`` pair per layer, each
``[num_kv_heads, num_blocks, block_size, head_dim]`` in the model dtype) and the sampler. Index
tensors are built from Python lists with one ``torch.tensor`` call each: per-step Python work is
O(tokens) list appends, no per-token tensor ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modelyard.engine.config import EngineConfig
from modelyard.engine.forward_batch import ForwardBatch
from modelyard.engine.layers.attention import prepare_attention
from modelyard.engine.sampler import Sampler, SamplerOutput
from modelyard.engine.scheduler import SchedulerOutput
from modelyard.engine.sequence import Sequence


def zeroed(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A zero tensor whose memory is only committed as it is written, on a CPU.

    ``torch.zeros`` writes every byte: for a KV cache sized from available memory (GBs) that is
    seconds of start-up and the whole size resident at once. ``numpy.zeros`` allocates with
    ``calloc``, which for a large block maps fresh zero pages from the kernel and writes nothing, so
    a block's pages are committed when a sequence first uses it (blocks are handed out from id 0).
    """
    if device.type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * dtype.itemsize
    return torch.from_numpy(np.zeros(nbytes, dtype=np.uint8)).view(dtype).view(shape)


@dataclass(slots=True)
class StepResult:
    """The sequences that sampled this step (in order) and what they sampled."""

    seqs: list[Sequence]
    sampled: SamplerOutput | None


class ModelRunner:
    """Builds the step's :class:`ForwardBatch`, runs forward + logits + sampling."""

    def __init__(
        self, model: Any, model_config: Any, config: EngineConfig, *, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.block_size = config.block_size
        mc = model_config
        bytes_per_block = (
            2
            * mc.num_layers
            * config.block_size
            * mc.num_kv_heads
            * mc.head_dim
            * torch.finfo(dtype).bits
            // 8
        )
        self.num_blocks = config.num_blocks_for(bytes_per_block, max_model_len=mc.max_position_embeddings)
        shape = (mc.num_kv_heads, self.num_blocks, config.block_size, mc.head_dim)
        self.kv_caches = [
            (zeroed(shape, dtype, device), zeroed(shape, dtype, device)) for _ in range(mc.num_layers)
        ]
        self.kv_cache_bytes = bytes_per_block * self.num_blocks
        self.sampler = Sampler(device, config.seed)
        self.lora_manager: Any = None  # engine.lora.LoRAManager once an adapter is loaded

    def build_batch(self, out: SchedulerOutput) -> tuple[ForwardBatch, list[Sequence]]:
        """The step's flattened inputs, and the sequences whose last token gets logits."""
        bs = self.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        ctx_lens: list[int] = []
        logits_idx: list[int] = []
        sample_seqs: list[Sequence] = []
        t = 0
        for seq, n in zip(out.seqs, out.num_tokens, strict=True):
            start = seq.num_computed_tokens
            end = start + n
            bt = seq.block_table
            if n == 1:
                input_ids.append(seq.token_ids[start])
                positions.append(start)
                slots.append(bt[start // bs] * bs + start % bs)
            else:
                input_ids.extend(seq.token_ids[start:end])
                positions.extend(range(start, end))
                slots.extend([bt[p // bs] * bs + p % bs for p in range(start, end)])
            ctx_lens.append(end)
            t += n
            if end == len(seq.token_ids):
                logits_idx.append(t - 1)
                sample_seqs.append(seq)
        width = max(len(s.block_table) for s in out.seqs)
        tables = [s.block_table + [0] * (width - len(s.block_table)) for s in out.seqs]
        dev = self.device
        batch = ForwardBatch(
            input_ids=torch.tensor(input_ids, dtype=torch.int64, device=dev),
            positions=torch.tensor(positions, dtype=torch.int64, device=dev),
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=dev),
            query_lens=list(out.num_tokens),
            context_lens=torch.tensor(ctx_lens, dtype=torch.int64, device=dev),
            block_tables=torch.tensor(tables, dtype=torch.int64, device=dev),
            logits_indices=torch.tensor(logits_idx, dtype=torch.int64, device=dev),
            block_size=bs,
            lora_slots=self._lora_slots(out),
        )
        return batch, sample_seqs

    def _lora_slots(self, out: SchedulerOutput) -> torch.Tensor | None:
        names = {s.lora for s in out.seqs if s.lora is not None}
        if not names:
            return None
        slot_of = self.lora_manager.slots_for(sorted(names))
        per_token: list[int] = []
        for seq, n in zip(out.seqs, out.num_tokens, strict=True):
            per_token.extend([slot_of[seq.lora] if seq.lora is not None else 0] * n)
        return torch.tensor(per_token, dtype=torch.int64, device=self.device)

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> StepResult:
        """Run the step; K/V of every scheduled token is written, sampling rows get a token."""
        batch, sample_seqs = self.build_batch(out)
        prepare_attention(batch)
        hidden = self.model.forward(batch, self.kv_caches)
        if not sample_seqs:
            return StepResult([], None)
        logits = self.model.compute_logits(hidden[batch.logits_indices])
        return StepResult(sample_seqs, self.sampler(logits, sample_seqs))
