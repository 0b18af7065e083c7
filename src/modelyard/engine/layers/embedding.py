"""Token embedding table (uninitialised at build time: the loader fills it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Embedding(nn.Module):
    """``weight [vocab, hidden]``; also the tied LM head of models that share it."""

    def __init__(
        self, vocab_size: int, hidden_size: int, *, dtype: torch.dtype, device: str | torch.device
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            torch.empty(vocab_size, hidden_size, dtype=dtype, device=device), requires_grad=False
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)
