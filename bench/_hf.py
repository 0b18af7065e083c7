"""The Hugging Face ``transformers`` baselines: ``generate`` one request at a time and in padded static batches.

Both run greedy decoding with EOS suppressed (``min_new_tokens == max_new_tokens``) so every
request yields exactly ``max_tokens`` tokens, like the other contenders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench._common import ProgressSink, ThroughputRun, now, sync

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_hf_model(folder: Path, dtype: str, device: str) -> Any:
    """``AutoModelForCausalLM`` from the converted folder, in eval mode on ``device``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    # A folder converted from GGUF keeps a ``quantization_config`` naming GGUF, which makes
    # transformers attach its GGUF quantizer; the weights are dense, so load them as plain ones.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=DTYPES[dtype])
    return model.to(device).eval()


@torch.inference_mode()
def _generate(model: Any, prompts: list[list[int]], max_tokens: int, device: str) -> list[list[int]]:
    """One padded batch through ``generate``; returns each prompt's new token ids."""
    width = max(len(p) for p in prompts)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    # Left padding keeps every sequence's last prompt token at the batch's last column.
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_tokens,
        min_new_tokens=max_tokens,
        do_sample=False,
        pad_token_id=pad,
    )
    sync(device)
    new = out.shape[1] - width
    if new != max_tokens:
        raise RuntimeError(f"transformers generated {new} tokens, expected {max_tokens}")
    return out[:, width:].tolist()


def warmup(model: Any, prompts: list[list[int]], device: str) -> None:
    _generate(model, prompts[:2], 2, device)


def sequential(
    model: Any,
    prompts: list[list[int]],
    max_tokens: int,
    device: str,
    *,
    concurrency: int,
    progress: ProgressSink,
    label: str,
) -> ThroughputRun:
    """Requests served one after another; ``len(prompts)`` of the ``concurrency`` that arrived at once.

    One-at-a-time service has the same rate whatever the concurrency, so measuring a subset of the
    requests gives the figure for all of them.
    """
    tokens: list[list[int]] = []
    with progress.task(label, len(prompts)):
        start = now()
        for prompt in prompts:
            tokens += _generate(model, [prompt], max_tokens, device)
            progress.advance(1)
        wall = now() - start
    return ThroughputRun(label, concurrency, len(prompts), sum(map(len, tokens)), wall, tokens=tokens)


def static_batch(
    model: Any,
    prompts: list[list[int]],
    max_tokens: int,
    device: str,
    *,
    progress: ProgressSink,
    label: str,
) -> ThroughputRun:
    """All ``prompts`` in one padded batch: the batch runs until its longest member finishes."""
    with progress.task(label, 1):
        start = now()
        tokens = _generate(model, prompts, max_tokens, device)
        wall = now() - start
        progress.advance(1)
    return ThroughputRun(label, len(prompts), len(prompts), sum(map(len, tokens)), wall, tokens=tokens)
