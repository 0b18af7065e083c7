"""CPU capability detection, the configuration ``auto`` resolves to, and the KV cache sized from memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from modelyard.engine import cpu
from modelyard.engine.config import MIN_AUTO_KV_CACHE_BYTES, EngineConfig, available_memory
from modelyard.errors import ConfigError

AVX2 = cpu.CpuCapability("AVX2", native_bf16=False, amx=False, cores=2, onednn_max_isa=None)
BF16 = cpu.CpuCapability("AVX512", native_bf16=True, amx=True, cores=2, onednn_max_isa=None)


@pytest.mark.parametrize(
    ("cap", "dtype", "quant", "want"),
    [
        (AVX2, "auto", "auto", (torch.float32, "dual")),
        (BF16, "auto", "auto", (torch.bfloat16, None)),
        (AVX2, "float32", "auto", (torch.float32, None)),  # an explicit dtype pins plain weights
        (AVX2, "auto", None, (torch.float32, None)),  # explicit "no quantization" wins
        (AVX2, "auto", "int8", (torch.float32, "int8")),
        (BF16, "auto", "int4", (torch.bfloat16, "int4")),
        (BF16, "float32", "auto", (torch.float32, None)),
    ],
)
def test_auto_choice(monkeypatch: pytest.MonkeyPatch, cap, dtype: str, quant, want) -> None:
    monkeypatch.setattr(cpu, "detect_cpu", lambda: cap)
    choice = EngineConfig(device="cpu", dtype=dtype, quantization=quant).auto_choice()
    assert (choice.dtype, choice.quantization) == want
    assert choice.reason


def test_avx2_switches_make_the_engine_choose_avx2() -> None:
    """``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` restrict torch and oneDNN: the engine follows."""
    code = (
        "import json; from modelyard.engine.config import EngineConfig; from modelyard.engine.cpu import detect_cpu;"
        "c = EngineConfig(device='cpu').auto_choice();"
        "print(json.dumps([detect_cpu().as_dict(), str(c.dtype), c.quantization]))"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    cap, dtype, quant = json.loads(out.stdout.strip().splitlines()[-1])
    assert cap["isa"] == "AVX2" and cap["native_bf16"] is False and cap["onednn_max_isa"] == "AVX2"
    assert (dtype, quant) == ("torch.float32", "dual")


def test_kv_cache_defaults_to_a_share_of_available_memory() -> None:
    per_block = 1 << 20
    avail = available_memory()
    cfg = EngineConfig(kv_cache_memory_fraction=0.05)
    blocks = cfg.num_blocks_for(per_block)
    want = max(avail * 0.05, MIN_AUTO_KV_CACHE_BYTES) / per_block
    assert abs(blocks - want) <= 0.2 * want + 1  # memory moves a little between the two reads
    # capped at what max_num_seqs sequences of the model's context can use
    capped = EngineConfig(max_num_seqs=2, block_size=16).num_blocks_for(per_block, max_model_len=160)
    assert capped == 2 * 10
    # explicit sizes win
    assert EngineConfig(kv_cache_bytes=5 * per_block).num_blocks_for(per_block) == 5
    assert EngineConfig(num_kv_blocks=7).num_blocks_for(per_block) == 7


@pytest.mark.parametrize("bad", [0, -0.1, 0.95, "half"])
def test_kv_cache_memory_fraction_is_validated(bad) -> None:
    with pytest.raises(ConfigError, match="kv_cache_memory_fraction"):
        EngineConfig(kv_cache_memory_fraction=bad)


def test_bench_c32_workload_fits_the_default_kv_cache() -> None:
    """The documented bench workload (32 sequences of 128 + 128 tokens, SmolLM2 fp32) needs no preemption."""
    per_block = 2 * 30 * 16 * 3 * 64 * 4  # layers * block_size * kv_heads * head_dim * fp32, K and V
    blocks = EngineConfig().num_blocks_for(per_block, max_model_len=8192)
    assert blocks >= 32 * (256 // 16 + 1)
