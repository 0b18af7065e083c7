"""RMSNorm in the two flavours the supported checkpoints use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """``x / rms(x) * w`` computed in float32 (Llama), or ``* (1 + w)`` when ``offset`` (Gemma).

    The rounding points mirror the reference implementations so logits match them closely:
    Llama casts the normalised value back to the model dtype before scaling, Gemma scales in float32.
    """

    def __init__(
        self, dim: int, eps: float, *, offset: bool = False, dtype: torch.dtype, device: str | torch.device
    ) -> None:
        super().__init__()
        self.eps = eps
        self.offset = offset
        self.weight = nn.Parameter(torch.zeros(dim, dtype=dtype, device=device), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # One fused kernel for pow/mean/rsqrt/mul (same float32 math as the reference formula).
        h = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        if self.offset:
            return (h * (1.0 + self.weight.float())).to(dtype)
        return self.weight * h.to(dtype)
