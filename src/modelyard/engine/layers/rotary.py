"""Rotary position embeddings (rotate-half layout, as in Hugging Face checkpoints)."""

from __future__ import annotations

import math

import torch

from modelyard.engine.models import RopeSpec


def inv_freq(spec: RopeSpec, head_dim: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Inverse frequencies ``[head_dim/2]`` in float32, with linear or llama3 scaling applied."""
    freqs = 1.0 / (
        spec.theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim)
    )
    if spec.rope_type == "linear":
        return freqs / spec.factor
    if spec.rope_type == "llama3":
        old = spec.original_max_position_embeddings
        low_wavelen = old / spec.low_freq_factor
        high_wavelen = old / spec.high_freq_factor
        wavelen = 2 * math.pi / freqs
        scaled = torch.where(wavelen > low_wavelen, freqs / spec.factor, freqs)
        smooth = (old / wavelen - spec.low_freq_factor) / (spec.high_freq_factor - spec.low_freq_factor)
        smoothed = (1 - smooth) * scaled / spec.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled)
    return freqs


def cos_sin(
    positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` of shape ``[T, 1, head_dim]`` for broadcasting over heads; computed once per step."""
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[:, None, :], emb.sin().to(dtype)[:, None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[T, heads, head_dim]``."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def cos_sin_signed(
    positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``[-sin | sin]`` ``[T, 1, head_dim]`` for :func:`apply_rotary_signed`, once per step."""
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    sin = emb.sin()
    sin[:, : freqs.shape[1]].neg_()
    return emb.cos().to(dtype)[:, None, :], sin.to(dtype)[:, None, :]


def apply_rotary_signed(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rotary` with the sign of ``rotate_half`` folded into ``sin_signed`` (bit-identical:
    negation is exact): 4 ops instead of 5. ``x`` ``[T, heads, head_dim]`` may be a strided view, e.g.
    the q and k heads of a fused qkv output rotated together."""
    half = x.shape[-1] // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return x * cos + swapped * sin_signed
