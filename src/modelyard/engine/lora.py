"""Run-time LoRA adapters (PEFT folders), served mixed in one batch.

Every adapter is validated and kept as a CPU copy. Up to ``max_loras`` of them are *resident*
in slots ``1..max_loras`` of the stacked ``lora_a`` / ``lora_b`` tensors of each target
:class:`~modelyard.engine.layers.linear.Linear` (slot 0 stays zero = no adapter); ``slots_for``
makes the adapters of a step resident, evicting the least recently used others. The stacks are as
wide as the largest rank added so far (at most ``max_rank``), not ``max_rank`` itself: every step pays
for the stack width, so rank-16 adapters under ``max_rank=64`` would otherwise cost four times their
compute. Adding a wider adapter regrows the stacks once. Smaller ranks are zero-padded; the scaling
(``alpha / r`` or ``alpha / sqrt(r)`` with rslora) is folded into B.

Not thread-safe: call ``add`` / ``remove`` / ``slots_for`` from the engine loop, between steps.
``remove`` of an adapter still used by running requests turns their slot into "no adapter".
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from modelyard.engine.layers.linear import Linear
from modelyard.errors import AdapterNotFound, InvalidRequest, OverCapacity

# PEFT target module -> (our module path inside a decoder layer, output slice index)
TARGETS: dict[str, tuple[str, int]] = {
    "q_proj": ("self_attn.qkv_proj", 0),
    "k_proj": ("self_attn.qkv_proj", 1),
    "v_proj": ("self_attn.qkv_proj", 2),
    "o_proj": ("self_attn.o_proj", 0),
    "gate_proj": ("mlp.gate_up_proj", 0),
    "up_proj": ("mlp.gate_up_proj", 1),
    "down_proj": ("mlp.down_proj", 0),
}
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


@dataclass(slots=True)
class Adapter:
    """A validated adapter: per ``(layer, target)`` the pair ``(A [r, in], B_scaled [out, r])`` on CPU."""

    name: str
    path: Path
    rank: int
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]


class LoRAManager:
    """Loads PEFT adapters and keeps up to ``max_loras`` of them resident in the model's Linears."""

    def __init__(self, model: nn.Module, *, max_loras: int, max_rank: int) -> None:
        if max_loras < 1 or max_rank < 1:
            raise InvalidRequest("max_loras and max_rank must be >= 1")
        self.model = model
        self.max_loras = max_loras
        self.max_rank = max_rank
        self._layers: nn.ModuleList = model.layers  # type: ignore[assignment]
        self._dtype: torch.dtype = model.dtype  # type: ignore[assignment]
        self._adapters: dict[str, Adapter] = {}
        self._resident: OrderedDict[str, int] = OrderedDict()  # name -> slot, least recently used first
        self.stack_rank = 0  # columns per target module in the stacks: the widest adapter added so far

    def names(self) -> list[str]:
        """Names of all added adapters (resident or not)."""
        return list(self._adapters)

    def add(self, name: str, path: str | Path) -> None:
        """Validate the PEFT folder at ``path`` and register it as ``name`` (replacing a previous one)."""
        adapter = self._read(name, Path(path))
        if name in self._adapters:
            self.remove(name)
        self._adapters[name] = adapter
        if adapter.rank > self.stack_rank:
            self._regrow(adapter.rank)

    def remove(self, name: str) -> None:
        """Forget ``name``; its slot (if resident) is zeroed and freed."""
        if name not in self._adapters:
            raise AdapterNotFound(f"adapter {name!r} is not loaded", param="model")
        slot = self._resident.pop(name, None)
        if slot is not None:
            self._clear_slot(slot)
        del self._adapters[name]

    def slots_for(self, names: Iterable[str]) -> dict[str, int]:
        """Make ``names`` resident (slots ``1..max_loras``), evicting least recently used others."""
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            if name not in self._adapters:
                raise AdapterNotFound(f"adapter {name!r} is not loaded", param="model")
        if len(wanted) > self.max_loras:
            raise OverCapacity(f"{len(wanted)} distinct adapters in one step; at most {self.max_loras} fit")
        for name in wanted:
            if name in self._resident:
                self._resident.move_to_end(name)
                continue
            used = set(self._resident.values())
            free = [s for s in range(1, self.max_loras + 1) if s not in used]
            if free:
                slot = free[0]
            else:
                victim = next(n for n in self._resident if n not in wanted)
                slot = self._resident.pop(victim)
            self._install(self._adapters[name], slot)
            self._resident[name] = slot
        return {name: self._resident[name] for name in wanted}

    # -- internals -------------------------------------------------------------------------

    def _read(self, name: str, path: Path) -> Adapter:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        cfg_file, weights_file = path / "adapter_config.json", path / "adapter_model.safetensors"
        if not cfg_file.is_file() or not weights_file.is_file():
            raise InvalidRequest(
                f"adapter {name!r}: {path} must hold adapter_config.json and adapter_model.safetensors",
                param="lora_path",
            )
        try:
            cfg = json.loads(cfg_file.read_text())
            tensors = load_file(str(weights_file))
        except (ValueError, OSError, SafetensorError) as exc:
            raise InvalidRequest(
                f"adapter {name!r}: unreadable files in {path}: {exc}", param="lora_path"
            ) from exc
        rank = int(cfg.get("r", 0))
        if not 0 < rank <= self.max_rank:
            raise InvalidRequest(
                f"adapter {name!r}: rank {rank} is outside 1..{self.max_rank}", param="lora_path"
            )
        if cfg.get("use_dora") or cfg.get("modules_to_save") or cfg.get("bias", "none") != "none":
            raise InvalidRequest(f"adapter {name!r}: DoRA, modules_to_save and LoRA biases are not supported")
        targets = cfg.get("target_modules") or []
        if isinstance(targets, list):
            unknown = sorted(set(targets) - set(TARGETS))
            if unknown:
                raise InvalidRequest(
                    f"adapter {name!r}: unsupported target modules {unknown}; supported: {sorted(TARGETS)}"
                )
        alpha = float(cfg.get("lora_alpha", rank))
        scaling = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
        pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
        for key, tensor in tensors.items():
            m = _KEY.search(key)
            if m is None or m.group(2) not in TARGETS:
                raise InvalidRequest(f"adapter {name!r}: unsupported tensor {key!r}")
            pairs.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = tensor
        weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        for (layer, target), ab in pairs.items():
            if set(ab) != {"A", "B"} or layer >= len(self._layers):
                raise InvalidRequest(
                    f"adapter {name!r}: layer {layer} {target} is incomplete or out of range"
                )
            linear, idx = self._linear(layer, target)
            a, b = ab["A"], ab["B"]
            want_a, want_b = (rank, linear.in_features), (linear.output_sizes[idx], rank)
            if tuple(a.shape) != want_a or tuple(b.shape) != want_b:
                raise InvalidRequest(
                    f"adapter {name!r}: layer {layer} {target} shapes {tuple(a.shape)}/{tuple(b.shape)} "
                    f"do not fit the model (expected {want_a}/{want_b})"
                )
            weights[(layer, target)] = (a.float().contiguous(), (b.float() * scaling).contiguous())
        if not weights:
            raise InvalidRequest(f"adapter {name!r}: no LoRA weights in {weights_file}")
        return Adapter(name, path, rank, weights)

    def _linear(self, layer: int, target: str) -> tuple[Linear, int]:
        module_path, idx = TARGETS[target]
        linear = self._layers[layer].get_submodule(module_path)
        assert isinstance(linear, Linear)
        return linear, idx

    def _regrow(self, rank: int) -> None:
        """Widen every stack to ``rank`` columns per module and reinstall the resident adapters."""
        self.stack_rank = rank
        for module in self.model.modules():
            if isinstance(module, Linear):
                module.lora_a = module.lora_b = None
                module.lora_cat = None
        for name, slot in self._resident.items():
            self._install(self._adapters[name], slot)

    def _ensure_stacks(self, linear: Linear) -> None:
        if linear.lora_a is None:
            n, r, device = self.max_loras + 1, self.stack_rank * len(linear.output_sizes), linear.device
            linear.lora_a = torch.zeros(n, linear.in_features, r, dtype=self._dtype, device=device)
            linear.lora_b = torch.zeros(n, r, linear.out_features, dtype=self._dtype, device=device)

    def _clear_slot(self, slot: int) -> None:
        for module in self.model.modules():
            if isinstance(module, Linear) and module.lora_a is not None and module.lora_b is not None:
                module.lora_a[slot].zero_()
                module.lora_b[slot].zero_()
                module.lora_cat = None

    def _install(self, adapter: Adapter, slot: int) -> None:
        self._clear_slot(slot)
        for (layer, target), (a, b) in adapter.weights.items():
            linear, idx = self._linear(layer, target)
            self._ensure_stacks(linear)
            assert linear.lora_a is not None and linear.lora_b is not None
            col = idx * self.stack_rank
            out = sum(linear.output_sizes[:idx])
            linear.lora_a[slot, :, col : col + adapter.rank] = a.t()
            linear.lora_b[slot, col : col + adapter.rank, out : out + b.shape[0]] = b.t()
