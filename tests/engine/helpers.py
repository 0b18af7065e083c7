"""Test helpers: a tiny paged-KV driver that builds ForwardBatches by hand, and tiny HF model folders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modelyard.engine.forward_batch import ForwardBatch
from modelyard.engine.layers.attention import prepare_attention

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "A quick brown fox jumps over the lazy dog; numbers 0123456789.",
    "Hello world! modelyard serves language models with paged attention.",
]


def write_tokenizer(folder: Path, *, bos: str, eos: str, extra: list[str]) -> Any:
    """Train a small byte-level BPE tokenizer and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", bos, eos, *extra]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def write_tiny_llama(folder: Path, *, seed: int = 0, tie: bool = False) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = write_tokenizer(folder, bos="<s>", eos="</s>", extra=["<|im_start|>", "<|im_end|>"])
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        initializer_range=0.2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=tie,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def write_tiny_gemma3(folder: Path, *, seed: int = 0, sliding_window: int = 4) -> Path:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = write_tokenizer(folder, bos="<bos>", eos="<eos>", extra=["<start_of_turn>", "<end_of_turn>"])
    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=256,
        initializer_range=0.2,
        query_pre_attn_scalar=24,
        sliding_window=sliding_window,
        pad_token_id=0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(cfg)
    with torch.no_grad():  # random non-trivial norm weights so the (1 + w) convention is exercised
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    return folder


def hf_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


@dataclass
class _Seq:
    blocks: list[int] = field(default_factory=list)
    length: int = 0


class PagedDriver:
    """Allocates a paged KV cache for a model and runs steps over hand-built ForwardBatches."""

    def __init__(self, model: Any, *, num_blocks: int = 64, block_size: int = 4) -> None:
        cfg = model.config
        dtype = next(model.parameters()).dtype
        shape = (cfg.num_kv_heads, num_blocks, block_size, cfg.head_dim)
        self.model = model
        self.block_size = block_size
        self.kv = [
            (torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)) for _ in range(cfg.num_layers)
        ]
        self.free = list(range(num_blocks - 1, 0, -1))  # block 0 stays unused, like a padding block
        self.seqs: dict[str, _Seq] = {}

    def build(self, items: list[tuple[str, list[int]]], lora: list[int] | None = None) -> ForwardBatch:
        ids, pos, slots, qlens, ctx, tables = [], [], [], [], [], []
        for sid, tokens in items:
            seq = self.seqs.setdefault(sid, _Seq())
            for t in tokens:
                if seq.length % self.block_size == 0:
                    seq.blocks.append(self.free.pop())
                slots.append(
                    seq.blocks[seq.length // self.block_size] * self.block_size + seq.length % self.block_size
                )
                pos.append(seq.length)
                ids.append(t)
                seq.length += 1
            qlens.append(len(tokens))
            ctx.append(seq.length)
            tables.append(list(seq.blocks))
        width = max(len(t) for t in tables)
        lora_slots = None
        if lora is not None:
            lora_slots = torch.tensor([s for s, (_, toks) in zip(lora, items, strict=True) for _ in toks])
        return ForwardBatch(
            input_ids=torch.tensor(ids),
            positions=torch.tensor(pos),
            slot_mapping=torch.tensor(slots),
            query_lens=qlens,
            context_lens=torch.tensor(ctx),
            block_tables=torch.tensor([t + [0] * (width - len(t)) for t in tables]),
            logits_indices=torch.cumsum(torch.tensor(qlens), 0) - 1,
            block_size=self.block_size,
            lora_slots=lora_slots,
        )

    def step(self, items: list[tuple[str, list[int]]], lora: list[int] | None = None) -> list[torch.Tensor]:
        """Run one step; return each item's logits ``[len(tokens), vocab]`` (float32)."""
        batch = self.build(items, lora)
        prepare_attention(batch)
        hidden = self.model.forward(batch, self.kv)
        logits = self.model.compute_logits(hidden)
        return list(logits.split(batch.query_lens))
