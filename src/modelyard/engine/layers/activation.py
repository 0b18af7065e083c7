"""Gated MLP activations on the fused ``[gate | up]`` projection output."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modelyard.errors import ConfigError


def gated_act(gate_up: torch.Tensor, act: str) -> torch.Tensor:
    """``act(gate) * up`` for ``gate_up = [gate | up]`` along the last dim."""
    gate, up = gate_up.chunk(2, dim=-1)
    if act == "silu":
        return F.silu(gate) * up
    if act in ("gelu_pytorch_tanh", "gelu_tanh", "gelu_new"):
        return F.gelu(gate, approximate="tanh") * up
    if act == "gelu":
        return F.gelu(gate) * up
    raise ConfigError(f"unsupported activation {act!r}; supported: silu, gelu, gelu_pytorch_tanh")
