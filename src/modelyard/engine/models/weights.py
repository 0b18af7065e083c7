"""Copying Hugging Face checkpoint tensors into our modules (fusing q/k/v and gate/up on the way)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from modelyard.engine.layers.linear import Linear

# HF projection name -> (our fused module name, index of its output slice)
FUSED = {
    "q_proj": ("qkv_proj", 0),
    "k_proj": ("qkv_proj", 1),
    "v_proj": ("qkv_proj", 2),
    "gate_proj": ("gate_up_proj", 0),
    "up_proj": ("gate_up_proj", 1),
}
_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.", "model.")


def hf_to_local(name: str) -> str:
    """``model.layers.0.self_attn.q_proj.weight`` -> ``layers.0.self_attn.q_proj.weight``."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def load_hf_weights(model: nn.Module, weights: Iterable[tuple[str, torch.Tensor]], *, tied: bool) -> None:
    """Copy every checkpoint tensor into ``model``; raise ``ValueError`` on unknown or missing ones."""
    params = dict(model.named_parameters())
    filled: set[str] = set()
    for hf_name, tensor in weights:
        name = hf_to_local(hf_name)
        if name == "lm_head.weight" and tied:
            continue
        if "rotary_emb" in name:
            continue
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] in FUSED:
            fused, idx = FUSED[parts[-2]]
            module_path = ".".join(parts[:-2] + [fused])
            layer = model.get_submodule(module_path)
            assert isinstance(layer, Linear)
            offset = sum(layer.output_sizes[:idx])
            size = layer.output_sizes[idx]
            target = getattr(layer, parts[-1])
            if target is None or tuple(tensor.shape) != (size, *target.shape[1:]):
                raise ValueError(
                    f"{hf_name}: shape {tuple(tensor.shape)} does not fit {module_path} slice {size}"
                )
            target.data[offset : offset + size].copy_(tensor)
            filled.add(f"{module_path}.{parts[-1]}:{idx}")
            continue
        if name not in params:
            raise ValueError(f"checkpoint tensor {hf_name!r} has no place in the model")
        if tuple(params[name].shape) != tuple(tensor.shape):
            raise ValueError(
                f"{hf_name}: shape {tuple(tensor.shape)} != expected {tuple(params[name].shape)}"
            )
        params[name].data.copy_(tensor)
        filled.add(name)
    missing = []
    for name in params:
        module_path, _, _leaf = name.rpartition(".")
        layer = model.get_submodule(module_path) if module_path else model
        if isinstance(layer, Linear) and len(layer.output_sizes) > 1:
            missing += [f"{name}:{i}" for i in range(len(layer.output_sizes)) if f"{name}:{i}" not in filled]
        elif name not in filled:
            missing.append(name)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
