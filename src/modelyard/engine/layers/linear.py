"""The one Linear used by every model: plain, int8 or int4 weight-only, plus batched multi-LoRA.

A fused layer (q/k/v or gate/up) records its ``output_sizes`` so a LoRA adapter's per-module
weights land in the right output slice. LoRA weights are stacked per resident slot (slot 0 is all
zeros = no adapter) and applied to the whole step at once, whatever mix of adapters the tokens use
(see :class:`LoRABatch`): small (decode) steps take one gather + two matmuls over every active
adapter with a per-token mask; large (prefill) steps, where that would compute every active adapter
for every token, run each adapter's two matmuls on its own rows only (segmented, as punica's SGMV).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(slots=True)
class LoRABatch:
    """Per-step LoRA routing, built once by the model from ``batch.lora_slots``.

    ``active``: ``[n]`` distinct non-zero slots in the step; ``token_mask``: ``[T, n, 1]`` 1.0 where
    token ``t`` uses ``active[j]``, in the activation dtype; ``segments``: for steps of more than
    :data:`LORA_SEGMENT_MIN_TOKENS` tokens, ``(slot, rows)`` per active adapter, else ``None``.
    """

    active: torch.Tensor
    token_mask: torch.Tensor
    segments: list[tuple[int, torch.Tensor]] | None = None
    key: tuple[int, ...] = ()


# Above this many tokens in a step, per-adapter row segments beat the masked all-adapter matmuls
# (whose cost grows with the number of active adapters); below it, the segments' per-adapter op
# overhead dominates.
LORA_SEGMENT_MIN_TOKENS = 128


def make_lora_batch(lora_slots: torch.Tensor | None, dtype: torch.dtype) -> LoRABatch | None:
    """None when no token of the step uses an adapter (LoRA then costs nothing)."""
    if lora_slots is None:
        return None
    active = torch.unique(lora_slots)
    active = active[active != 0]
    if active.numel() == 0:
        return None
    hits = lora_slots[:, None] == active[None, :]
    segments = None
    if lora_slots.numel() > LORA_SEGMENT_MIN_TOKENS:
        segments = [(int(slot), hits[:, j].nonzero().flatten()) for j, slot in enumerate(active.tolist())]
    return LoRABatch(active, hits.to(dtype)[:, :, None], segments, tuple(active.tolist()))


INT8_KERNEL_MAX_ROWS = 16
# An LM head (vocab x hidden, 28M-168M weights) costs far more to convert per call than a decoder
# Linear: the int8 kernel beats the convert-then-matmul path up to ~64 rows (measured 2.4x at 64
# rows on SmolLM2's head in bf16), i.e. for every decode step of up to 64 sequences.
INT8_HEAD_KERNEL_MAX_ROWS = 64


# ``dual`` weights: the compact copy's kernel up to this many rows, the dense weight above. Measured
# with AVX2 kernels, 1 thread, on 40 distinct 576 x 3072 weights (streamed from memory as in a
# step): int4 / int8 (bf16 activations) / fp32 dense 223 / 358 / 565 us at 1 row, 740 / 888 / 1,431
# at 8 rows, 1,442 / 1,537 / 1,493 at 16.
DUAL_MAX_ROWS = 8


def small_batch(x: torch.Tensor) -> bool:
    """Whether a ``dual`` layer runs ``x`` on its compact copy (else on its dense weight)."""
    return x.device.type == "cpu" and x.shape[0] <= DUAL_MAX_ROWS


def kernel_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype the CPU int8/int4 kernels run in: bf16 even in a float32 model.

    torch's float32 variants of ``_weight_int8pack_mm`` / ``_weight_int4pack_mm_for_cpu`` are
    6-8x slower than a dense float32 matmul on AVX2 CPUs (SmolLM2's layers, 1 row), their bf16
    variants as fast or faster; the rounding is that of a bf16 model's matmuls.
    """
    return x.bfloat16() if x.dtype == torch.float32 else x


@dataclass(slots=True)
class Int8Weight:
    """Per-output-channel symmetric int8: ``W ≈ q * scale[:, None]``.

    ``head``: an LM head / tied embedding table, which takes the kernel for up to
    :data:`INT8_HEAD_KERNEL_MAX_ROWS` rows instead of :data:`INT8_KERNEL_MAX_ROWS`.
    """

    q: torch.Tensor  # [out, in] int8
    scale: torch.Tensor  # [out] activation dtype
    head: bool = False
    kernel_scale: torch.Tensor | None = None  # ``scale`` in the CPU kernel's dtype, made once

    def __post_init__(self) -> None:
        self.kernel_scale = kernel_input(self.scale)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        # The CPU int8 kernel is a fast gemv but ~3x slower than a dense matmul past a few rows;
        # for larger batches (prefill, wide decode) converting the weight per call is cheaper.
        rows = INT8_HEAD_KERNEL_MAX_ROWS if self.head else INT8_KERNEL_MAX_ROWS
        if x.device.type == "cpu" and x.shape[0] <= rows:
            xk = kernel_input(x)
            scale = self.kernel_scale if self.kernel_scale is not None else self.scale
            return torch.ops.aten._weight_int8pack_mm(xk, self.q, scale.to(xk.dtype)).to(x.dtype)
        return F.linear(x, self.q.to(x.dtype)) * self.scale.to(x.dtype)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of ``W``, dequantized to the scale dtype (an embedding lookup)."""
        return self.q[ids].to(self.scale.dtype) * self.scale[ids].unsqueeze(-1)

    def nbytes(self) -> int:
        return self.q.numel() + self.scale.numel() * self.scale.element_size()


@dataclass(slots=True)
class Int4Weight:
    """Grouped asymmetric int4 in the CPU int4pack layout: ``W ≈ (q - 8) * scale + zero`` per group.

    The CPU kernel dequantizes per row, so its cost grows linearly with the rows of ``x``: int4
    pays off for small-batch decode (bound by weight bytes) and costs ~2.5x on long prefills.
    """

    packed: torch.Tensor
    scales_zeros: torch.Tensor  # [in / group, out, 2], in the kernel's dtype (bf16 for a float32 model)
    group_size: int
    out_features: int

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        xk = kernel_input(x)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            xk, self.packed, self.group_size, self.scales_zeros.to(xk.dtype)
        ).to(x.dtype)

    def nbytes(self) -> int:
        return (
            self.packed.numel() * self.packed.element_size()
            + self.scales_zeros.numel() * self.scales_zeros.element_size()
        )


class Linear(nn.Module):
    """``y = x @ W.T + b`` for ``x`` ``[T, in]`` with optional quantized ``W`` and per-token LoRA."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = False,
        output_sizes: list[int] | None = None,
        dtype: torch.dtype,
        device: str | torch.device,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.output_sizes = output_sizes or [out_features]
        self.weight: nn.Parameter | None = nn.Parameter(
            torch.empty(out_features, in_features, dtype=dtype, device=device), requires_grad=False
        )
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False)
            if bias
            else None
        )
        self.qweight: Int8Weight | Int4Weight | None = None
        # oneDNN-blocked copy of a bf16 CPU weight (see pack_for_cpu); replaces ``weight``.
        self.packed: torch.Tensor | None = None
        # Stacked LoRA weights, set by LoRAManager: A [slots, in, n_sub*rank], B [slots, n_sub*rank, out].
        self.lora_a: torch.Tensor | None = None
        self.lora_b: torch.Tensor | None = None
        # The active slots' A and B laid side by side, kept while the step's active set repeats
        # (decode steps usually do); LoRAManager drops it whenever it writes the stacks.
        self.lora_cat: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, lora: LoRABatch | None = None) -> torch.Tensor:
        if self.packed is not None:
            y = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        elif self.qweight is not None and (self.weight is None or small_batch(x)):
            y = self.qweight.matmul(x)
            if self.bias is not None:
                y = y + self.bias
        else:
            y = F.linear(x, self.dense_weight(), self.bias)
        if lora is not None and self.lora_a is not None:
            y = y + self._lora_delta(x, lora)
        return y

    def _lora_delta(self, x: torch.Tensor, lora: LoRABatch) -> torch.Tensor:
        assert self.lora_a is not None and self.lora_b is not None
        if lora.segments is not None:
            delta = x.new_zeros(x.shape[0], self.out_features)
            for slot, rows in lora.segments:
                h = x.index_select(0, rows) @ self.lora_a[slot]
                delta.index_add_(0, rows, h @ self.lora_b[slot])
            return delta
        cat = self.lora_cat
        if cat is None or cat[0] != lora.key:
            n = lora.active.numel()
            a = self.lora_a[lora.active]  # [n, in, r]
            r = a.shape[-1]
            a_cat = a.permute(1, 0, 2).reshape(self.in_features, n * r).contiguous()
            b_cat = self.lora_b[lora.active].reshape(n * r, self.out_features)
            cat = self.lora_cat = (lora.key, a_cat, b_cat)
        _, a_cat, b_cat = cat
        n = len(lora.key)
        h = x @ a_cat  # [T, n*r]
        h = (h.view(-1, n, a_cat.shape[1] // n) * lora.token_mask).view(-1, a_cat.shape[1])
        return h @ b_cat

    def pack_for_cpu(self) -> bool:
        """Reorder a plain bf16 CPU weight into oneDNN's blocked layout (~10-25% faster decode steps
        measured on SmolLM2); the plain copy is dropped. Returns False where it does not apply."""
        w = self.weight
        if (
            w is None
            or w.device.type != "cpu"
            or w.dtype != torch.bfloat16
            or not torch.backends.mkldnn.is_available()
            or not torch.ops.mkldnn._is_mkldnn_bf16_supported()
        ):
            return False
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w.data, 32)
        self.weight = None
        return True

    def weight_nbytes(self) -> int:
        """Resident bytes of the base weight and bias in whatever form they take."""
        total = self.qweight.nbytes() if self.qweight is not None else 0  # dual: both forms
        for t in (self.weight, self.packed, self.bias):
            if t is not None:
                total += t.numel() * t.element_size()
        return total

    @property
    def device(self) -> torch.device:
        if self.packed is not None:
            return self.packed.device
        if self.weight is not None:
            return self.weight.device
        assert self.qweight is not None
        return self.qweight.packed.device if isinstance(self.qweight, Int4Weight) else self.qweight.q.device

    def dense_weight(self) -> torch.Tensor:
        """The plain weight ``[out, in]`` (quantized or packed layers do not keep it)."""
        if self.weight is None:
            raise RuntimeError("weight was quantized or packed; the dense weight is gone")
        return self.weight
