"""Our Gemma 3 over the paged KV cache matches transformers' Gemma3ForCausalLM (sliding window 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelyard.engine.loader import load_model

from ..helpers import PagedDriver, write_tiny_gemma3

PROMPT = [5, 17, 42, 99, 3, 250, 7, 8, 64, 120, 11, 200, 31, 45, 46]  # longer than the window (4)
TOL = {torch.float32: 2e-4, torch.bfloat16: 6e-2}


def _ref_logits(folder: Path, tokens: list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    with torch.no_grad():
        return ref(torch.tensor([tokens])).logits[0].float()


def _check(ours: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
    scale = ref.abs().max().item()
    err = (ours - ref).abs().max().item()
    assert err <= TOL[dtype] * max(1.0, scale), f"max abs err {err:.3g} (logit scale {scale:.3g})"


def test_config_has_local_and_global_layers(tiny_gemma3_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(tiny_gemma3_dir, cache_dir=tmp_path, dtype=torch.float32)
    cfg = loaded.config
    assert cfg.architecture == "gemma3"
    assert cfg.sliding_window == [4, None, 4]
    assert cfg.rope[0].theta == 10_000.0 and cfg.rope[1].theta == 1_000_000.0
    assert cfg.tie_word_embeddings and loaded.model.lm_head is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prefill_then_decode_past_the_window(
    tiny_gemma3_dir: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    loaded = load_model(tiny_gemma3_dir, cache_dir=tmp_path, dtype=dtype)
    full = PROMPT + [9, 77, 130, 2, 66, 70]
    expected = _ref_logits(tiny_gemma3_dir, full, dtype)
    drv = PagedDriver(loaded.model, block_size=4)
    (out,) = drv.step([("a", PROMPT)])
    _check(out, expected[: len(PROMPT)], dtype)
    for i in range(len(PROMPT), len(full)):
        (out,) = drv.step([("a", [full[i]])])
        _check(out[0], expected[i], dtype)


def test_window_changes_the_result(tmp_path: Path) -> None:
    """The same weights with a window of 4 vs 64 must differ once the prompt is longer than 4."""
    small = write_tiny_gemma3(tmp_path / "w4", seed=1, sliding_window=4)
    large = write_tiny_gemma3(tmp_path / "w64", seed=1, sliding_window=64)
    outs = []
    for folder in (small, large):
        loaded = load_model(folder, cache_dir=tmp_path / "c", dtype=torch.float32)
        (out,) = PagedDriver(loaded.model).step([("a", PROMPT)])
        _check(out, _ref_logits(folder, PROMPT))
        outs.append(out)
    assert torch.allclose(outs[0][:4], outs[1][:4], atol=1e-5)  # within the window: identical
    assert (outs[0][-1] - outs[1][-1]).abs().max() > 1e-3


def test_chunked_prefill_and_mixed_batch(tiny_gemma3_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(tiny_gemma3_dir, cache_dir=tmp_path, dtype=torch.float32)
    drv = PagedDriver(loaded.model, block_size=4)
    b = [33, 44, 55, 66, 77, 88, 10]
    (c1,) = drv.step([("a", PROMPT[:6])])
    outs = drv.step([("b", b), ("a", PROMPT[6:])])  # second chunk reads a cached prefix past the window
    _check(torch.cat([c1, outs[1]]), _ref_logits(tiny_gemma3_dir, PROMPT))
    _check(outs[0], _ref_logits(tiny_gemma3_dir, b))
    outs = drv.step([("b", [1]), ("c", [3, 4, 5, 6, 7, 8]), ("a", [2])])
    _check(outs[0][0], _ref_logits(tiny_gemma3_dir, b + [1])[-1])
    _check(outs[1], _ref_logits(tiny_gemma3_dir, [3, 4, 5, 6, 7, 8]))
    _check(outs[2][0], _ref_logits(tiny_gemma3_dir, PROMPT + [2])[-1])
