"""Engine settings: one slotted dataclass, validated when built, with errors that name the fix."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelyard.errors import ConfigError

_DTYPES = ("auto", "float32", "bfloat16")
_DEVICES = ("auto", "cpu", "cuda")
_QUANT = (None, "int8", "int4")


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
      (bytes of K and V over all layers); if both are ``None``, 256 MiB.
    - ``enable_prefix_caching``: reuse the KV blocks of full prompt blocks across requests.
    - ``dtype``: ``"auto"`` = bfloat16 on CUDA and on CPUs with AVX512-bf16 / AMX, else float32.
    - ``device``: ``"auto"`` = CUDA when available, else CPU.
    - ``quantization``: ``None``, ``"int8"`` or ``"int4"`` weight-only quantization.
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
    enable_prefix_caching: bool = True
    dtype: str = "auto"
    device: str = "auto"
    quantization: str | None = None
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
        if self.dtype not in _DTYPES:
            raise ConfigError(f"engine.dtype={self.dtype!r} is invalid: use one of {', '.join(_DTYPES)}")
        if self.device not in _DEVICES:
            raise ConfigError(f"engine.device={self.device!r} is invalid: use one of {', '.join(_DEVICES)}")
        if self.quantization not in _QUANT:
            raise ConfigError(f"engine.quantization={self.quantization!r} is invalid: use none, int8 or int4")
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

    def resolved_dtype(self) -> torch.dtype:
        """The compute dtype (``auto`` resolved for the resolved device)."""
        if self.dtype == "float32":
            return torch.float32
        if self.dtype == "bfloat16":
            return torch.bfloat16
        if self.resolved_device().type == "cuda":
            return torch.bfloat16
        return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32

    def num_blocks_for(self, bytes_per_block: int) -> int:
        """KV blocks to allocate, given the bytes one block takes over all layers (K and V)."""
        if self.num_kv_blocks is not None:
            return self.num_kv_blocks
        budget = self.kv_cache_bytes if self.kv_cache_bytes is not None else 256 * 1024 * 1024
        blocks = budget // bytes_per_block
        if blocks < 1:
            raise ConfigError(
                f"engine.kv_cache_bytes={budget} holds no {bytes_per_block}-byte KV block: raise it"
            )
        return int(blocks)


def _cpu_has_fast_bf16() -> bool:
    """Whether this CPU does bf16 matmuls natively (AVX512-bf16 or AMX), where bf16 beats fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False
    return False
