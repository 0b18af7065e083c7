"""The model runner's KV-cache allocation: zeros, committed only as written."""

from __future__ import annotations

import sys

import pytest
import torch

from modelyard.engine.model_runner import zeroed

MIB = 2**20


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_zeroed_is_a_writable_zero_tensor_of_its_own(dtype: torch.dtype) -> None:
    a, b = (
        zeroed((2, 5, 16, 8), dtype, torch.device("cpu")),
        zeroed((2, 5, 16, 8), dtype, torch.device("cpu")),
    )
    assert a.shape == (2, 5, 16, 8) and a.dtype == dtype and a.is_contiguous()
    assert bool((a == 0).all()) and bool((b == 0).all())
    a[1, 3] = 1.5
    assert float(a[1, 3].sum()) == 1.5 * 16 * 8 and bool((b == 0).all())  # no shared memory
    assert float(a.sum()) == 1.5 * 16 * 8


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_large_cache_is_not_resident_until_used() -> None:
    before = resident_bytes()
    caches = [zeroed((1, 4096, 16, 64), torch.float32, torch.device("cpu")) for _ in range(16)]  # 16 x 16 MiB
    grown = resident_bytes() - before
    assert grown < 16 * MIB, f"allocating 256 MiB of KV cache made {grown / MIB:.0f} MiB resident"
    caches[0][0, :64] = 1.0  # the first 64 blocks of one layer: 256 KiB
    assert resident_bytes() - before < 32 * MIB
    assert float(caches[0].sum()) == 64 * 16 * 64
