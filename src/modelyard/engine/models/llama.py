"""Llama-family decoder (Llama 2/3, SmolLM2, Mistral without sliding window)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from modelyard.engine.forward_batch import ForwardBatch
from modelyard.engine.layers.activation import gated_act
from modelyard.engine.layers.attention import paged_attention, prepare_attention
from modelyard.engine.layers.embedding import Embedding
from modelyard.engine.layers.linear import Linear, LoRABatch, make_lora_batch
from modelyard.engine.layers.norm import RMSNorm
from modelyard.engine.layers.rotary import apply_rotary_signed, cos_sin_signed, inv_freq
from modelyard.engine.models import ModelConfig
from modelyard.engine.models.weights import load_hf_weights

KVCache = tuple[torch.Tensor, torch.Tensor]


class LlamaAttention(nn.Module):
    def __init__(
        self, cfg: ModelConfig, layer_idx: int, dtype: torch.dtype, device: str | torch.device
    ) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        sizes = [
            cfg.num_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
        ]
        self.qkv_proj = Linear(
            cfg.hidden_size,
            sum(sizes),
            bias=cfg.attention_bias,
            output_sizes=sizes,
            dtype=dtype,
            device=device,
        )
        self.o_proj = Linear(sizes[0], cfg.hidden_size, bias=cfg.attention_bias, dtype=dtype, device=device)
        self.sizes = sizes
        self.scale = cfg.attn_scale
        self.window = cfg.sliding_window[layer_idx]

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        batch: ForwardBatch,
        kv: KVCache,
        lora: LoRABatch | None,
    ) -> torch.Tensor:
        qkv = self.qkv_proj(x, lora)
        n_qk = self.num_heads + self.num_kv_heads
        # q and k heads sit side by side in the fused output: rotate them in one go.
        qk = apply_rotary_signed(qkv[:, : n_qk * self.head_dim].view(-1, n_qk, self.head_dim), cos, sin)
        q, k = qk[:, : self.num_heads], qk[:, self.num_heads :]
        v = qkv[:, n_qk * self.head_dim :].view(-1, self.num_kv_heads, self.head_dim)
        o = paged_attention(q, k, v, kv, batch, scale=self.scale, window=self.window)
        return self.o_proj(o, lora)


class LlamaMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: str | torch.device) -> None:
        super().__init__()
        i, h = cfg.intermediate_size, cfg.hidden_size
        self.gate_up_proj = Linear(
            h, 2 * i, bias=cfg.mlp_bias, output_sizes=[i, i], dtype=dtype, device=device
        )
        self.down_proj = Linear(i, h, bias=cfg.mlp_bias, dtype=dtype, device=device)
        self.act = cfg.hidden_act

    def forward(self, x: torch.Tensor, lora: LoRABatch | None) -> torch.Tensor:
        return self.down_proj(gated_act(self.gate_up_proj(x, lora), self.act), lora)


class LlamaDecoderLayer(nn.Module):
    def __init__(
        self, cfg: ModelConfig, layer_idx: int, dtype: torch.dtype, device: str | torch.device
    ) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(cfg, layer_idx, dtype, device)
        self.mlp = LlamaMLP(cfg, dtype, device)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype=dtype, device=device)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype=dtype, device=device)

    def forward(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        batch: ForwardBatch,
        kv: KVCache,
        lora: LoRABatch | None,
    ) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, batch, kv, lora)
        return h + self.mlp(self.post_attention_layernorm(h), lora)


class LlamaForCausalLM(nn.Module):
    """Implements :class:`modelyard.engine.models.CausalLM` for Llama checkpoints."""

    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: str | torch.device) -> None:
        super().__init__()
        self.config = config
        self.dtype = dtype
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, dtype=dtype, device=device)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, i, dtype, device) for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, device=device)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else Linear(config.hidden_size, config.vocab_size, dtype=dtype, device=device)
        )
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inv_freq(config.rope[0], config.head_dim, device), persistent=False)

    @torch.inference_mode()
    def forward(self, batch: ForwardBatch, kv_caches: list[KVCache]) -> torch.Tensor:
        if batch.attn is None:
            prepare_attention(batch)
        h = self.embed_tokens(batch.input_ids)
        cos, sin = cos_sin_signed(batch.positions, self.inv_freq, self.dtype)
        lora = make_lora_batch(batch.lora_slots, self.dtype)
        for layer, kv in zip(self.layers, kv_caches, strict=True):
            h = layer(h, cos, sin, batch, kv, lora)
        return self.norm(h)

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.embed_tokens.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
        return logits.float()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy a Hugging Face Llama state dict (names as in ``LlamaForCausalLM``) into the model."""
        load_hf_weights(self, weights, tied=self.config.tie_word_embeddings)
