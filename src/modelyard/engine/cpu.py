"""What this CPU computes fast, and the engine configuration chosen from it (``dtype``/``quantization``
``"auto"``).

Detection honours the switches that restrict torch and oneDNN themselves, read when the engine is
built (never at import): ``ATEN_CPU_CAPABILITY=avx2`` (torch's own kernels) and
``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's matmuls). With both set, an AVX-512 / AMX host behaves as an
AVX2 host and the engine picks the AVX2 configuration, so that path can be tested and benchmarked on
any x86 machine.

The choice (measured on SmolLM2-135M layers, see docs/bench-engine.md):

- native bf16 (AVX512-bf16 or AMX, not restricted): bf16 weights and activations, oneDNN-packed.
- otherwise (AVX2): float32 activations and dense float32 weights for large batches (prefill, wide
  decode: the fastest matmul such a CPU has), plus a compact copy of every Linear (int4 where the
  checkpoint is already 4-bit so the copy is exact, else per-channel int8) and an int8 LM head that
  torch's int4/int8 kernels multiply with bf16 activations for batches of up to
  :data:`modelyard.engine.layers.linear.DUAL_MAX_ROWS` rows (decode of a few sequences is bound
  by weight bytes, which the copies cut 4-8x). This is ``quantization: dual``: 12-25 % more weight
  memory than float32, as fast as float32 on large batches and faster on small ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(slots=True, frozen=True)
class CpuCapability:
    """``isa``: torch's kernel level (``AVX512``, ``AVX2``, ...); ``native_bf16``: bf16 matmuls run in
    hardware here (AVX512-bf16 or AMX and neither torch nor oneDNN restricted below it)."""

    isa: str
    native_bf16: bool
    amx: bool
    cores: int
    onednn_max_isa: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "isa": self.isa,
            "native_bf16": self.native_bf16,
            "amx": self.amx,
            "cores": self.cores,
            "onednn_max_isa": self.onednn_max_isa,
        }


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def detect_cpu() -> CpuCapability:
    """This CPU's capability as torch and oneDNN will use it (restrictions by environment included)."""
    flags = _cpu_flags()
    isa = torch.backends.cpu.get_cpu_capability()
    onednn_max = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    hw_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    onednn_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    native = hw_bf16 and onednn_bf16 and isa.startswith("AVX512")
    amx = "amx_bf16" in flags and native and (onednn_max is None or "AMX" in onednn_max.upper())
    return CpuCapability(isa, native, amx, os.cpu_count() or 1, onednn_max)


@dataclass(slots=True, frozen=True)
class AutoChoice:
    """The configuration ``"auto"`` settings resolved to, and why (logged at start-up)."""

    dtype: torch.dtype
    quantization: str | None
    reason: str


def choose(device: torch.device, dtype: str, quantization: str | None) -> AutoChoice:
    """Resolve ``dtype`` / ``quantization`` (``"auto"`` allowed) for ``device``.

    An explicit value of either wins; ``quantization="auto"`` picks a weight format only when
    ``dtype`` is ``"auto"`` too (an explicit dtype means "this dtype, plain weights").
    """
    if device.type == "cuda":
        dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(dtype, torch.bfloat16)
        quant = None if quantization == "auto" else quantization
        return AutoChoice(dt, quant, "cuda")
    cap = detect_cpu()
    if dtype == "auto":
        dt = torch.bfloat16 if cap.native_bf16 else torch.float32
    else:
        dt = torch.float32 if dtype == "float32" else torch.bfloat16
    if quantization != "auto":
        return AutoChoice(dt, quantization, f"cpu {cap.isa}, explicit settings")
    if dtype != "auto":
        return AutoChoice(dt, None, f"cpu {cap.isa}, explicit dtype")
    if cap.native_bf16:
        return AutoChoice(dt, None, f"cpu {cap.isa} with native bf16: bf16 weights and activations")
    return AutoChoice(
        dt, "dual", f"cpu {cap.isa} without native bf16: fp32 dense + int4/int8 copies for small batches"
    )
