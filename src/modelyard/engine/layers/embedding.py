"""Token embedding table (uninitialised at build time: the loader fills it), optionally int8.

A tied model uses the same table as its LM head (:meth:`Embedding.attend`). Quantized, the table
is ONE per-row int8 matrix: the head runs the int8 matmul kernel on it and the input lookup
dequantizes only the gathered rows, so a tied model never holds a second copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelyard.engine.layers.linear import Int8Weight, small_batch


class Embedding(nn.Module):
    """``weight [vocab, hidden]``, or its per-row int8 form ``qweight``; also the tied LM head."""

    def __init__(
        self, vocab_size: int, hidden_size: int, *, dtype: torch.dtype, device: str | torch.device
    ) -> None:
        super().__init__()
        self.weight: nn.Parameter | None = nn.Parameter(
            torch.empty(vocab_size, hidden_size, dtype=dtype, device=device), requires_grad=False
        )
        self.qweight: Int8Weight | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return F.embedding(ids, self.weight)
        assert self.qweight is not None
        return self.qweight.rows(ids)

    def attend(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden [R, hidden] @ table.T``: the logits of a tied LM head, in the activation dtype."""
        q = self.qweight
        if q is not None and (self.weight is None or small_batch(hidden)):
            return q.matmul(hidden)
        assert self.weight is not None
        return F.linear(hidden, self.weight)

    def weight_nbytes(self) -> int:
        """Resident bytes of the table in whatever forms it takes (``dual``: both)."""
        total = self.qweight.nbytes() if self.qweight is not None else 0
        if self.weight is not None:
            total += self.weight.numel() * self.weight.element_size()
        return total
