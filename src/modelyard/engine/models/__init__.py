"""Model configs, the :class:`CausalLM` contract with the runner, and ``build_model``.

Models are plain ``torch.nn.Module`` trees in the nano-vllm style: every linear layer sees the
flattened ``[T, hidden]`` tokens of one step, attention reads and writes the paged KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from modelyard.engine.forward_batch import ForwardBatch


@dataclass(slots=True)
class RopeSpec:
    """Rotary embedding parameters of one attention kind (``rope_type``: default, linear or llama3)."""

    theta: float = 10_000.0
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    @classmethod
    def from_hf(cls, params: dict[str, Any] | None, default_theta: float) -> RopeSpec:
        params = dict(params or {})
        rope_type = params.get("rope_type", params.get("type", "default")) or "default"
        if rope_type not in ("default", "linear", "llama3"):
            raise ConfigError(f"unsupported rope_type {rope_type!r}; supported: default, linear, llama3")
        return cls(
            theta=float(params.get("rope_theta", default_theta)),
            rope_type=rope_type,
            factor=float(params.get("factor", 1.0)),
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=int(params.get("original_max_position_embeddings", 8192)),
        )


@dataclass(slots=True)
class ModelConfig:
    """Architecture facts the engine needs, independent of the checkpoint format.

    ``sliding_window[i]`` is the window of layer ``i`` (a key at distance ``>= window`` from the query
    is masked) or ``None`` for global attention. ``rope[i]`` is that layer's rotary spec.
    """

    architecture: str  # "llama" | "gemma3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    sliding_window: list[int | None]
    rope: list[RopeSpec]
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    query_pre_attn_scalar: float | None = None
    final_logit_softcapping: float | None = None
    attn_logit_softcapping: float | None = None

    @property
    def attn_scale(self) -> float:
        """Softmax scale of q·k: Gemma uses ``query_pre_attn_scalar``, Llama ``head_dim``."""
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> ModelConfig:
        """Build from a Hugging Face ``config.json`` dict (transformers 4.x or 5.x layout)."""
        hf = dict(hf.get("text_config") or {}, **{k: v for k, v in hf.items() if k != "text_config"})
        model_type = hf.get("model_type", "")
        archs = " ".join(hf.get("architectures") or [])
        if model_type in ("llama", "mistral") or "Llama" in archs:
            arch = "llama"
        elif model_type in ("gemma3_text", "gemma3") or "Gemma3" in archs:
            arch = "gemma3"
        else:
            raise ConfigError(f"unsupported model_type {model_type!r}; supported: llama, gemma3_text")
        n_layers = int(hf["num_hidden_layers"])
        n_heads = int(hf["num_attention_heads"])
        head_dim = int(hf.get("head_dim") or hf["hidden_size"] // n_heads)
        eos = hf.get("eos_token_id")
        eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos] if eos is not None else [])]
        rope_params = hf.get("rope_parameters") or {}
        if arch == "gemma3":
            layer_types = hf.get("layer_types") or [
                "sliding_attention"
                if (i + 1) % int(hf.get("sliding_window_pattern", 6))
                else "full_attention"
                for i in range(n_layers)
            ]
            window = int(hf.get("sliding_window") or 4096)
            windows: list[int | None] = [window if t == "sliding_attention" else None for t in layer_types]
            if "full_attention" in rope_params or "sliding_attention" in rope_params:
                global_rope = RopeSpec.from_hf(rope_params.get("full_attention"), 1_000_000.0)
                local_rope = RopeSpec.from_hf(rope_params.get("sliding_attention"), 10_000.0)
            else:
                global_rope = RopeSpec.from_hf(
                    {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 1_000_000.0)}, 1e6
                )
                local_rope = RopeSpec(theta=float(hf.get("rope_local_base_freq", 10_000.0)))
            ropes = [local_rope if w is not None else global_rope for w in windows]
            act = hf.get("hidden_activation") or "gelu_pytorch_tanh"
        else:
            # Mistral-style checkpoints may declare one window for every layer.
            window_all = hf.get("sliding_window") if model_type == "mistral" else None
            windows = [int(window_all) if window_all else None] * n_layers
            params = rope_params or {
                **(hf.get("rope_scaling") or {}),
                "rope_theta": hf.get("rope_theta", 10_000.0),
            }
            ropes = [RopeSpec.from_hf(params, 10_000.0)] * n_layers
            act = hf.get("hidden_act") or "silu"
        return cls(
            architecture=arch,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=n_layers,
            num_heads=n_heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
            head_dim=head_dim,
            max_position_embeddings=int(hf.get("max_position_embeddings") or 8192),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            sliding_window=windows,
            rope=ropes,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
            pad_token_id=hf.get("pad_token_id"),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", arch == "gemma3")),
            attention_bias=bool(hf.get("attention_bias", False)),
            mlp_bias=bool(hf.get("mlp_bias", False)),
            hidden_act=act,
            query_pre_attn_scalar=hf.get("query_pre_attn_scalar") if arch == "gemma3" else None,
            final_logit_softcapping=hf.get("final_logit_softcapping"),
            attn_logit_softcapping=hf.get("attn_logit_softcapping"),
        )


@runtime_checkable
class CausalLM(Protocol):
    """What the model runner calls; implemented by every architecture.

    ``forward`` expects ``batch.attn`` already filled by ``layers.attention.prepare_attention(batch)``
    (the runner calls it once per step). ``kv_caches[i]`` is layer ``i``'s ``(k_cache, v_cache)``,
    each ``[num_kv_heads, num_blocks, block_size, head_dim]`` in the model dtype.
    """

    config: ModelConfig
    dtype: torch.dtype  # the compute (activation) dtype

    def forward(
        self, batch: ForwardBatch, kv_caches: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """Hidden states ``[T, hidden]`` of every token; writes each token's K/V at ``batch.slot_mapping`` first."""
        ...

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[R, hidden]`` -> ``[R, vocab]`` float32 logits."""
        ...


def _check_supported(config: ModelConfig) -> None:
    if config.attn_logit_softcapping:
        raise ConfigError("attention logit soft-capping (Gemma 2) is not supported by the engine")


def build_model(
    config: ModelConfig, *, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu"
) -> Any:
    """An uninitialised model of ``config.architecture`` (weights are filled by the loader)."""
    _check_supported(config)
    if config.architecture == "llama":
        from modelyard.engine.models.llama import LlamaForCausalLM

        return LlamaForCausalLM(config, dtype=dtype, device=device)
    if config.architecture == "gemma3":
        from modelyard.engine.models.gemma3 import Gemma3ForCausalLM

        return Gemma3ForCausalLM(config, dtype=dtype, device=device)
    raise ConfigError(f"unsupported architecture {config.architecture!r}; supported: llama, gemma3")
