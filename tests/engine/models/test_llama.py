"""Our Llama over the paged KV cache matches transformers' LlamaForCausalLM on the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelyard.engine.loader import load_model

from ..helpers import PagedDriver

PROMPT = [5, 17, 42, 99, 3, 250, 7, 8, 64, 120, 11, 200, 31]
TOL = {torch.float32: 2e-4, torch.bfloat16: 6e-2}


def _reference(folder: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()


def _ref_logits(ref, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return ref(torch.tensor([tokens])).logits[0].float()


def _check(ours: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    scale = ref.abs().max().item()
    err = (ours - ref).abs().max().item()
    assert err <= TOL[dtype] * max(1.0, scale), f"max abs err {err:.3g} (logit scale {scale:.3g})"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prefill_then_decode_matches_transformers(
    tiny_llama_dir: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=dtype)
    ref = _reference(tiny_llama_dir, dtype)
    drv = PagedDriver(loaded.model, block_size=4)
    full = PROMPT + [9, 77, 130, 2, 66]
    expected = _ref_logits(ref, full)
    (out,) = drv.step([("a", PROMPT)])
    _check(out, expected[: len(PROMPT)], dtype)
    for i in range(len(PROMPT), len(full)):
        (out,) = drv.step([("a", [full[i]])])
        _check(out[0], expected[i], dtype)


def test_two_chunk_prefill_matches_single_prefill(tiny_llama_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    ref = _reference(tiny_llama_dir, torch.float32)
    drv = PagedDriver(loaded.model, block_size=4)
    expected = _ref_logits(ref, PROMPT + [1])
    (c1,) = drv.step([("a", PROMPT[:6])])  # the second chunk then reads a cached prefix: context > query
    (c2,) = drv.step([("a", PROMPT[6:])])
    (d,) = drv.step([("a", [1])])
    _check(torch.cat([c1, c2, d]), expected, torch.float32)


def test_mixed_batch_of_prefill_chunk_and_decodes(tiny_llama_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    ref = _reference(tiny_llama_dir, torch.float32)
    drv = PagedDriver(loaded.model, block_size=4)
    a, b, c = PROMPT, [33, 44, 55, 66, 77, 88, 10], [12, 13, 14, 15, 16, 17, 18, 19, 20]
    drv.step([("a", a), ("b", b)])
    drv.step([("c", c[:5])])
    # decode a, second chunk of c, decode b: decodes are not contiguous in the step
    outs = drv.step([("a", [21]), ("c", c[5:]), ("b", [22])])
    _check(outs[0][0], _ref_logits(ref, a + [21])[-1], torch.float32)
    _check(outs[1], _ref_logits(ref, c)[5:], torch.float32)
    _check(outs[2][0], _ref_logits(ref, b + [22])[-1], torch.float32)
    # a fresh prompt in the same step as decodes of longer sequences
    outs = drv.step([("a", [23]), ("d", [3, 4, 5]), ("b", [24])])
    _check(outs[0][0], _ref_logits(ref, a + [21, 23])[-1], torch.float32)
    _check(outs[1], _ref_logits(ref, [3, 4, 5]), torch.float32)
    _check(outs[2][0], _ref_logits(ref, b + [22, 24])[-1], torch.float32)


def test_tied_embeddings_and_loaded_metadata(tmp_path: Path) -> None:
    from ..helpers import write_tiny_llama

    folder = write_tiny_llama(tmp_path / "tied", seed=3, tie=True)
    loaded = load_model(folder, cache_dir=tmp_path / "cache", dtype=torch.float32)
    assert loaded.model.lm_head is None
    assert loaded.architecture == "llama" and not loaded.is_base_model
    assert loaded.tokenizer.convert_tokens_to_ids("<|im_end|>") in loaded.eos_token_ids
    assert loaded.tokenizer.eos_token_id in loaded.eos_token_ids
    assert len(loaded.digest) == 64
    drv = PagedDriver(loaded.model)
    (out,) = drv.step([("a", PROMPT)])
    _check(out, _ref_logits(_reference(folder, torch.float32), PROMPT), torch.float32)
