"""Engine settings: one slotted dataclass, validated when built, with errors that name the fix."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelyard.engine.cpu import AutoChoice, choose
from modelyard.errors import ConfigError

_DTYPES = ("auto", "float32", "bfloat16")
_DEVICES = ("auto", "cpu", "cuda")
_QUANT = (None, "auto", "int8", "int4", "dual")
DEFAULT_KV_CACHE_MEMORY_FRACTION = 0.1
MIN_AUTO_KV_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class EngineConfig:
    """How one engine instance batches, caches and runs a model.

    Fields:
    - ``max_num_seqs``: most sequences running at once (every ``n`` choice counts).
    - ``max_num_batched_tokens``: the per-step token budget (decodes + prefill chunks); a prompt longer
      than this is prefilled in chunks over several steps.
    - ``max_model_len``: longest prompt + completion; ``None`` = the model's limit. It is capped by the
      model's ``max_position_embeddings`` and by the KV cache size.
    - ``block_size``: tokens per KV-cache block (and per prefix-cache entry).
    - ``num_kv_blocks`` / ``kv_cache_bytes``: KV-cache size, as a block count or as a memory budget
      (bytes of K and V over all layers); if both are ``None``, ``kv_cache_memory_fraction`` of the
      memory available when the engine starts (at least 64 MiB), capped at what ``max_num_seqs``
      sequences of ``max_model_len`` tokens can use.
    - ``kv_cache_memory_fraction``: that share of available memory (``MemAvailable``, or the
      cgroup limit where lower), as vLLM's CPU backend takes a KV space; 0.1 by default.
    - ``enable_prefix_caching``: reuse the KV blocks of full prompt blocks across requests.
    - ``dtype``: ``"auto"`` = bfloat16 on CUDA and on CPUs with AVX512-bf16 / AMX, else float32
      (``ATEN_CPU_CAPABILITY=avx2`` / ``ONEDNN_MAX_CPU_ISA=AVX2`` make such a CPU count as AVX2).
    - ``device``: ``"auto"`` = CUDA when available, else CPU.
    - ``quantization``: ``"auto"`` (with ``dtype: auto``: the fastest format for this CPU, i.e. none
      with native bf16 and ``dual`` without; with an explicit ``dtype``: none), ``None``, ``"int8"``
      or ``"int4"`` weight-only quantization, or ``"dual"``: dense weights for large batches plus a
      compact copy for batches of a few rows (int4 where the checkpoint's weights are already 4-bit,
      so it is exact, else int8; the LM head int8): fastest on CPUs without native bf16, 12-25 %
      more memory than float32.
    - ``quantize_lm_head``: with ``quantization`` set, also store the LM head and token embedding
      (one matrix when tied) as per-row int8; ``False`` keeps them in the model dtype (exact logits
      layer, more memory, slower decode head).
    - ``max_loras`` / ``max_lora_rank``: adapters resident at once (and in one step), largest rank.
    - ``num_threads``: torch intra-op threads on CPU (``None`` = leave torch's default).
    - ``long_prefill_token_threshold``: most prompt tokens one sequence may take in a step (0 = no
      limit besides the step budget), so one long prompt cannot starve other prefills.
    - ``seed``: seeds the engine-wide generator used by unseeded requests (``None`` = random).
    """

    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    max_model_len: int | None = None
    block_size: int = 16
    num_kv_blocks: int | None = None
    kv_cache_bytes: int | None = None
    kv_cache_memory_fraction: float = DEFAULT_KV_CACHE_MEMORY_FRACTION
    enable_prefix_caching: bool = True
    dtype: str = "auto"
    device: str = "auto"
    quantization: str | None = "auto"
    quantize_lm_head: bool = True
    max_loras: int = 8
    max_lora_rank: int = 64
    num_threads: int | None = None
    long_prefill_token_threshold: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "max_loras", "max_lora_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"engine.{name}={value!r} is invalid: set a positive integer")
        for name in ("max_model_len", "num_kv_blocks", "kv_cache_bytes", "num_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"engine.{name}={value!r} is invalid: set a positive integer or leave it unset"
                )
        if self.long_prefill_token_threshold < 0:
            raise ConfigError(
                f"engine.long_prefill_token_threshold={self.long_prefill_token_threshold!r} is invalid: "
                "set 0 (no limit) or a positive integer"
            )
        fraction = self.kv_cache_memory_fraction
        if not isinstance(fraction, int | float) or not 0 < fraction <= 0.9:
            raise ConfigError(
                f"engine.kv_cache_memory_fraction={fraction!r} is invalid: set a share in (0, 0.9]"
            )
        if self.dtype not in _DTYPES:
            raise ConfigError(f"engine.dtype={self.dtype!r} is invalid: use one of {', '.join(_DTYPES)}")
        if self.device not in _DEVICES:
            raise ConfigError(f"engine.device={self.device!r} is invalid: use one of {', '.join(_DEVICES)}")
        if self.quantization not in _QUANT:
            raise ConfigError(
                f"engine.quantization={self.quantization!r} is invalid: use auto, none, int8, int4 or dual"
            )
        if not isinstance(self.quantize_lm_head, bool):
            raise ConfigError(
                f"engine.quantize_lm_head={self.quantize_lm_head!r} is invalid: use true or false"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("engine.device='cuda' but no CUDA device is visible: use 'auto' or 'cpu'")
        if self.num_kv_blocks is not None and self.kv_cache_bytes is not None:
            raise ConfigError("engine.num_kv_blocks and engine.kv_cache_bytes are both set: set only one")

    def resolved_device(self) -> torch.device:
        """The device to run on (``auto`` resolved)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def auto_choice(self) -> AutoChoice:
        """``dtype`` and ``quantization`` resolved for this device and CPU (see ``engine/cpu.py``)."""
        return choose(self.resolved_device(), self.dtype, self.quantization)

    def resolved_dtype(self) -> torch.dtype:
        """The compute dtype (``auto`` resolved for the resolved device and CPU)."""
        return self.auto_choice().dtype

    def resolved_quantization(self) -> str | None:
        """The weight format (``auto`` resolved; ``None`` = plain weights in the compute dtype)."""
        return self.auto_choice().quantization

    def num_blocks_for(self, bytes_per_block: int, *, max_model_len: int | None = None) -> int:
        """KV blocks to allocate, given the bytes one block takes over all layers (K and V).

        ``max_model_len``: the model's context, which with ``max_num_seqs`` caps an automatic size.
        """
        if self.num_kv_blocks is not None:
            return self.num_kv_blocks
        if self.kv_cache_bytes is not None:
            budget = self.kv_cache_bytes
        else:
            budget = max(int(available_memory() * self.kv_cache_memory_fraction), MIN_AUTO_KV_CACHE_BYTES)
            context = self.max_model_len or max_model_len
            if context is not None:
                need = -(-context // self.block_size) * self.max_num_seqs * bytes_per_block
                budget = min(budget, need)
        blocks = budget // bytes_per_block
        if blocks < 1:
            raise ConfigError(
                f"engine.kv_cache_bytes={budget} holds no {bytes_per_block}-byte KV block: raise it"
            )
        return int(blocks)


def available_memory() -> int:
    """Bytes of memory available to this process now: ``MemAvailable``, or the cgroup limit minus
    its usage where that is lower (containers)."""
    avail = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max", encoding="ascii").read().strip()
        if limit != "max":
            used = int(open("/sys/fs/cgroup/memory.current", encoding="ascii").read())
            cgroup_free = max(int(limit) - used, 0)
            avail = min(avail, cgroup_free) if avail else cgroup_free
    except (OSError, ValueError):
        pass
    return avail or 4 * 1024**3  # unknown platform: assume a few GiB are free
