"""Gemma 3 text decoder (e.g. gemma-3-270m): the Llama skeleton plus Gemma's differences.

Differences that matter for matching the reference: ``(1 + w)`` RMSNorms computed in float32,
four norms per layer (pre/post attention, pre/post MLP), per-head q/k norms before rotary,
embeddings scaled by ``sqrt(hidden)`` rounded to the model dtype, softmax scale
``query_pre_attn_scalar ** -0.5``, local layers with a sliding window and their own rope theta,
GELU-tanh gated MLP, tied LM head and optional final logit soft-capping.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from modelyard.engine.forward_batch import ForwardBatch
from modelyard.engine.layers.attention import paged_attention, prepare_attention
from modelyard.engine.layers.embedding import Embedding
from modelyard.engine.layers.linear import Linear, LoRABatch, make_lora_batch
from modelyard.engine.layers.norm import RMSNorm
from modelyard.engine.layers.rotary import apply_rotary, cos_sin, inv_freq
from modelyard.engine.models import ModelConfig
from modelyard.engine.models.llama import LlamaMLP
from modelyard.engine.models.weights import load_hf_weights

KVCache = tuple[torch.Tensor, torch.Tensor]


class Gemma3Attention(nn.Module):
    def __init__(
        self, cfg: ModelConfig, layer_idx: int, dtype: torch.dtype, device: str | torch.device
    ) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        kv = cfg.num_kv_heads * cfg.head_dim
        self.sizes = [cfg.num_heads * cfg.head_dim, kv, kv]
        self.qkv_proj = Linear(
            cfg.hidden_size,
            sum(self.sizes),
            bias=cfg.attention_bias,
            output_sizes=self.sizes,
            dtype=dtype,
            device=device,
        )
        self.o_proj = Linear(
            self.sizes[0], cfg.hidden_size, bias=cfg.attention_bias, dtype=dtype, device=device
        )
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, offset=True, dtype=dtype, device=device)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, offset=True, dtype=dtype, device=device)
        self.scale = cfg.attn_scale
        self.window = cfg.sliding_window[layer_idx]

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        batch: ForwardBatch,
        kv: KVCache,
        lora: LoRABatch | None,
    ) -> torch.Tensor:
        cos, sin = rope
        q, k, v = self.qkv_proj(x, lora).split(self.sizes, dim=-1)
        q = apply_rotary(self.q_norm(q.view(-1, self.num_heads, self.head_dim)), cos, sin)
        k = apply_rotary(self.k_norm(k.view(-1, self.num_kv_heads, self.head_dim)), cos, sin)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        o = paged_attention(q, k, v, kv, batch, scale=self.scale, window=self.window)
        return self.o_proj(o, lora)


class Gemma3DecoderLayer(nn.Module):
    def __init__(
        self, cfg: ModelConfig, layer_idx: int, dtype: torch.dtype, device: str | torch.device
    ) -> None:
        super().__init__()
        self.is_sliding = cfg.sliding_window[layer_idx] is not None
        self.self_attn = Gemma3Attention(cfg, layer_idx, dtype, device)
        self.mlp = LlamaMLP(cfg, dtype, device)

        def norm() -> RMSNorm:
            return RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, offset=True, dtype=dtype, device=device)

        self.input_layernorm = norm()
        self.post_attention_layernorm = norm()
        self.pre_feedforward_layernorm = norm()
        self.post_feedforward_layernorm = norm()

    def forward(
        self,
        h: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        batch: ForwardBatch,
        kv: KVCache,
        lora: LoRABatch | None,
    ) -> torch.Tensor:
        h = h + self.post_attention_layernorm(self.self_attn(self.input_layernorm(h), rope, batch, kv, lora))
        return h + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(h), lora))


class Gemma3ForCausalLM(nn.Module):
    """Implements :class:`modelyard.engine.models.CausalLM` for Gemma 3 text checkpoints."""

    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: str | torch.device) -> None:
        super().__init__()
        self.config = config
        self.dtype = dtype
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, dtype=dtype, device=device)
        self.layers = nn.ModuleList(
            Gemma3DecoderLayer(config, i, dtype, device) for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, offset=True, dtype=dtype, device=device)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else Linear(config.hidden_size, config.vocab_size, dtype=dtype, device=device)
        )
        # The reference rounds the scale to the model dtype before multiplying.
        self.embed_scale = float(torch.tensor(config.hidden_size**0.5).to(dtype))
        # One inv_freq per distinct rope spec (local vs global layers), so cos/sin are computed once each per step.
        specs = list(dict.fromkeys((s.theta, s.rope_type, s.factor) for s in config.rope))
        self.rope_index = [specs.index((s.theta, s.rope_type, s.factor)) for s in config.rope]
        for i, key in enumerate(specs):
            spec = config.rope[[(s.theta, s.rope_type, s.factor) for s in config.rope].index(key)]
            self.register_buffer(f"inv_freq_{i}", inv_freq(spec, config.head_dim, device), persistent=False)
        self.num_ropes = len(specs)

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch, kv_caches: list[KVCache]) -> torch.Tensor:
        if batch.attn is None:
            prepare_attention(batch)
        h = self.embed_tokens(batch.input_ids) * self.embed_scale
        ropes = [
            cos_sin(batch.positions, getattr(self, f"inv_freq_{i}"), self.dtype)
            for i in range(self.num_ropes)
        ]
        lora = make_lora_batch(batch.lora_slots, self.dtype)
        for layer, kv, r in zip(self.layers, kv_caches, self.rope_index, strict=True):
            h = layer(h, ropes[r], batch, kv, lora)
        return self.norm(h)

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        head = self.embed_tokens.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
        logits = head.float()
        cap = self.config.final_logit_softcapping
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy a Hugging Face Gemma 3 (text) state dict into the model."""
        load_hf_weights(self, weights, tied=self.config.tie_word_embeddings)
