"""Batched multi-LoRA in the Linear: the masked path (small steps) and the segmented path (large
steps) both equal a per-token reference ``x @ W.T + x @ A[slot] @ B[slot]``."""

from __future__ import annotations

import pytest
import torch

from modelyard.engine.layers.linear import LORA_SEGMENT_MIN_TOKENS, Linear, make_lora_batch


def _linear(slots: int, rank: int) -> Linear:
    gen = torch.Generator().manual_seed(0)
    lin = Linear(24, 40, dtype=torch.float32, device="cpu")
    with torch.no_grad():
        lin.weight.copy_(torch.randn(40, 24, generator=gen))
    lin.lora_a = torch.randn(slots, 24, rank, generator=gen)
    lin.lora_b = torch.randn(slots, rank, 40, generator=gen)
    lin.lora_a[0].zero_()
    lin.lora_b[0].zero_()
    return lin


@pytest.mark.parametrize("tokens", [LORA_SEGMENT_MIN_TOKENS // 4, LORA_SEGMENT_MIN_TOKENS * 3])
def test_mixed_slots_equal_per_token_reference(tokens: int) -> None:
    lin = _linear(slots=5, rank=4)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(tokens, 24, generator=gen)
    slots = torch.randint(0, 5, (tokens,), generator=gen)
    slots[0], slots[1] = 3, 0  # at least one adapter token and one plain token
    batch = make_lora_batch(slots, torch.float32)
    assert batch is not None
    assert (batch.segments is not None) == (tokens > LORA_SEGMENT_MIN_TOKENS)
    with torch.inference_mode():
        got = lin(x, batch)
    ref = torch.stack(
        [x[t] @ lin.weight.T + x[t] @ lin.lora_a[s] @ lin.lora_b[s] for t, s in enumerate(slots.tolist())]
    )
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    plain = slots == 0
    torch.testing.assert_close(got[plain], x[plain] @ lin.weight.T, rtol=1e-5, atol=1e-5)
