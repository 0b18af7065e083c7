"""Weight-only quantization of a loaded model (int8 or int4), in place.

- ``int8``: symmetric per-output-channel, ``W ≈ q * scale``; CPU matmul by
  ``aten._weight_int8pack_mm`` for small batches.
- ``int4``: asymmetric per group of 32 input channels (64 or 128 where 32 does not divide;
  32 matches the blocks of GGUF Q4 checkpoints, so their weights survive almost exactly),
  packed for ``aten._weight_int4pack_mm_for_cpu``; a layer no group size fits, or a non-CPU
  device, gets int8 instead.

On CPU both kernels take bf16 activations, in a float32 model too (their float32 variants are 6-8x
slower than dense float32 on AVX2; see :func:`modelyard.engine.layers.linear.kernel_input`).

- ``dual``: a compact copy of every Linear AND its dense weight: the copy's kernel for batches of
  up to ``DUAL_MAX_ROWS`` rows (decode of a few sequences, bound by weight bytes), the dense matmul
  above (prefill, wide decode, bound by arithmetic). The copy is int4 where the weight round-trips
  through group-32 int4 exactly (a checkpoint that was 4-bit already, e.g. GGUF Q4_0/Q4_1), else
  int8, so ``dual`` never changes a weight by more than int8 rounding. The auto choice on CPUs
  without native bf16, where no quantized path beats a dense float32 matmul past a few rows (see
  ``engine/cpu.py``). The token embedding stays dense for lookups; with ``head=True`` the LM head
  gets an int8 copy too.

The LM head and the token embedding (``head=True``, the default) become per-row int8 in both
modes: one int8 table serves a tied model's head (the int8 matmul kernel) and its input lookup
(only the gathered rows are dequantized), so the matrix is stored once. int8 rather than int4
because the int4pack layout is opaque to a row gather, and the head's rounding shows directly in
the logits. ``head=False`` leaves both in the model dtype. LoRA keeps working: the adapters add
their delta on top of the quantized matmul.
"""

from __future__ import annotations

import torch
from torch import nn

from modelyard.engine.layers.embedding import Embedding
from modelyard.engine.layers.linear import Int4Weight, Int8Weight, Linear, kernel_input
from modelyard.errors import ConfigError

MODES = ("int8", "int4", "dual")
_GROUP_SIZES = (32, 64, 128)  # smallest first: GGUF Q4 checkpoints use blocks of 32


def _int8_codes(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = weight.float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def _int4_codes(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out_f, in_f = weight.shape
    w = weight.float().reshape(out_f, in_f // group_size, group_size)
    w_max, w_min = w.amax(dim=-1), w.amin(dim=-1)
    scale = (w_max - w_min).clamp(min=1e-6) / 15.0
    zero = w_min + scale * 8.0  # the kernel computes (q - 8) * scale + zero
    q = torch.round((w - w_min[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32)
    return q.reshape(out_f, in_f), scale, zero


def group_size_for(in_features: int) -> int | None:
    """The int4 group size used for a layer with ``in_features`` inputs (None: int8 instead)."""
    return next((g for g in _GROUP_SIZES if in_features % g == 0), None)


def quantize_int8(weight: torch.Tensor, *, head: bool = False) -> Int8Weight:
    """Per-output-channel symmetric int8 of ``weight [out, in]`` (``head``: see :class:`Int8Weight`)."""
    q, scale = _int8_codes(weight)
    return Int8Weight(q=q.contiguous(), scale=scale.to(weight.dtype), head=head)


def quantize_int4(weight: torch.Tensor, group_size: int) -> Int4Weight:
    """Grouped asymmetric int4 of ``weight [out, in]`` in the CPU int4pack layout."""
    q, scale, zero = _int4_codes(weight, group_size)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.contiguous(), 2)
    # Stored in the kernel's dtype (bf16 in a float32 model): no conversion per call.
    scales_zeros = kernel_input(
        torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(weight.dtype)
    )
    return Int4Weight(
        packed=packed, scales_zeros=scales_zeros, group_size=group_size, out_features=weight.shape[0]
    )


# A group's int4 round trip counts as exact when no weight moves by more than this share of the
# group's step: float rounding of a checkpoint that was 4-bit already, not quantization.
INT4_EXACT_TOLERANCE = 0.01


def int4_is_exact(weight: torch.Tensor, group_size: int) -> bool:
    """Whether group-``group_size`` int4 reproduces ``weight`` (up to float rounding)."""
    if weight.device.type != "cpu":
        return False
    q, scale, zero = _int4_codes(weight, group_size)
    out_f = weight.shape[0]
    deq = (q.reshape(out_f, -1, group_size).float() - 8.0) * scale[..., None] + zero[..., None]
    err = (deq - weight.float().reshape(out_f, -1, group_size)).abs().amax(dim=-1)
    return bool((err <= INT4_EXACT_TOLERANCE * scale).all())


def fake_quantize(weight: torch.Tensor, mode: str) -> torch.Tensor:
    """``weight`` rounded as ``quantize_`` would store it, back in float32 (a reference for tests)."""
    group = group_size_for(weight.shape[1])
    if mode == "int4" and group is not None:
        q, scale, zero = _int4_codes(weight, group)
        deq = (q.reshape(weight.shape[0], -1, group).float() - 8.0) * scale[..., None] + zero[..., None]
        return deq.reshape(weight.shape)
    q, scale = _int8_codes(weight)
    return q.float() * scale[:, None]


def _head(model: nn.Module) -> Linear | None:
    head = getattr(model, "lm_head", None)
    return head if isinstance(head, Linear) else None


def quantize_(model: nn.Module, mode: str, *, head: bool = True) -> None:
    """Replace every Linear's weight by its ``mode`` quantized form, in place; with ``head``, the LM
    head and token embedding become per-row int8 too (else they keep the model dtype)."""
    if mode not in MODES:
        raise ConfigError(f"unknown quantization {mode!r}; choose one of {', '.join(MODES)}")
    lm_head = _head(model)
    dual = mode == "dual"
    for module in model.modules():
        if isinstance(module, Embedding):
            if dual:
                if head and module.qweight is None and module.weight is not None:
                    module.qweight = quantize_int8(module.weight.data, head=True)
                continue
            if head and module.qweight is None:
                assert module.weight is not None
                module.qweight = quantize_int8(module.weight.data, head=True)
                module.weight = None
            continue
        if not isinstance(module, Linear) or module.qweight is not None:
            continue
        if module is lm_head and not head:
            continue
        if module.weight is None:
            raise ConfigError("quantize_ needs plain weights: quantize before packing (Linear.pack_for_cpu)")
        weight = module.weight.data
        group = group_size_for(module.in_features)
        if dual:
            is_head = module is lm_head
            exact4 = not is_head and group is not None and int4_is_exact(weight, group)
            module.qweight = (
                quantize_int4(weight, group)  # type: ignore[arg-type]
                if exact4
                else quantize_int8(weight, head=is_head)
            )
            continue
        if mode == "int4" and module is not lm_head and group is not None and weight.device.type == "cpu":
            module.qweight = quantize_int4(weight, group)
        else:
            module.qweight = quantize_int8(weight, head=module is lm_head)
        module.weight = None


def weight_bytes(model: nn.Module, *, linear_only: bool = False) -> int:
    """Bytes of resident base weights (quantized payload + scales; LoRA stacks not counted).

    ``linear_only``: just the decoder's Linears (not embeddings, norms, LM head).
    """
    lm_head = _head(model)
    total = 0
    for module in model.modules():
        if isinstance(module, Linear):
            if not (linear_only and module is lm_head):
                total += module.weight_nbytes()
        elif isinstance(module, Embedding):
            total += 0 if linear_only else module.weight_nbytes()
        elif not linear_only:
            for p in module.parameters(recurse=False):
                total += p.numel() * p.element_size()
    return total
