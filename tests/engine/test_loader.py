"""Loader: HF folders, GGUF conversion + cache, packaged models (slow), errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from modelyard.engine.loader import load_model, packaged_model_path
from modelyard.errors import ConfigError, ModelNotFound

from .helpers import PagedDriver


def test_hf_folder_load_in_bf16(tiny_llama_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path)
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    again = load_model(tiny_llama_dir, cache_dir=tmp_path)
    assert loaded.digest == again.digest and len(loaded.digest) == 64
    assert loaded.chat_template is not None and "<|im_start|>" in loaded.chat_template
    assert loaded.source == str(tiny_llama_dir) and loaded.load_seconds > 0


def test_missing_and_unsupported_sources(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        load_model(tmp_path / "nope.gguf", cache_dir=tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError):
        load_model(tmp_path / "weights.bin", cache_dir=tmp_path)
    with pytest.raises(ModelNotFound):
        packaged_model_path("no-such-model")


def test_broken_gguf_leaves_no_cache(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(Exception):  # noqa: B017 - whatever the GGUF reader raises, no half cache may remain
        load_model(bad, cache_dir=cache)
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []


# -- the real packaged models -------------------------------------------------------------------


def _greedy(loaded, prompt: str, n: int) -> str:
    ids = loaded.tokenizer(prompt)["input_ids"]
    drv = PagedDriver(loaded.model, num_blocks=64, block_size=16)
    (out,) = drv.step([("s", ids)])
    new: list[int] = []
    for _ in range(n):
        new.append(int(out[-1].argmax()))
        (out,) = drv.step([("s", new[-1:])])
    return loaded.tokenizer.decode(new)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_smollm2_matches_transformers_gguf_load(smollm2_loaded) -> None:
    from transformers import AutoModelForCausalLM

    gguf = packaged_model_path("smollm2-135m-instruct")
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = smollm2_loaded.tokenizer("The capital of France is")["input_ids"]
    with torch.no_grad():
        expected = ref(torch.tensor([ids])).logits[0].float()
    (ours,) = PagedDriver(smollm2_loaded.model, block_size=16).step([("s", ids)])
    err = (ours - expected).abs().max().item()
    assert err < 1e-3 * expected.abs().max().item(), err


@pytest.mark.slow
def test_smollm2_says_paris_and_loads_fast_from_cache(smollm2_loaded, model_cache_dir: Path) -> None:
    assert smollm2_loaded.architecture == "llama" and not smollm2_loaded.is_base_model
    assert "<|im_start|>" in (smollm2_loaded.chat_template or "")
    assert smollm2_loaded.tokenizer.convert_tokens_to_ids("<|im_end|>") in smollm2_loaded.eos_token_ids
    assert "Paris" in _greedy(smollm2_loaded, "The capital of France is", 6)
    start = time.perf_counter()
    cached = load_model(packaged_model_path("smollm2-135m-instruct"), cache_dir=model_cache_dir)
    elapsed = time.perf_counter() - start
    print(f"SmolLM2 first load {smollm2_loaded.load_seconds:.1f}s, cached bf16 load {elapsed:.2f}s")
    assert elapsed < 3.0
    assert cached.digest == smollm2_loaded.digest
    assert "Paris" in _greedy(cached, "The capital of France is", 6)


@pytest.mark.slow
def test_gemma3_270m_loads_and_completes(model_cache_dir: Path) -> None:
    loaded = load_model("gemma-3-270m", cache_dir=model_cache_dir, dtype=torch.float32)
    first = loaded.load_seconds
    assert loaded.architecture == "gemma3" and loaded.is_base_model
    assert "<start_of_turn>model" in (loaded.chat_template or "")
    assert loaded.tokenizer.convert_tokens_to_ids("<end_of_turn>") in loaded.eos_token_ids
    assert loaded.config.sliding_window.count(None) == 3 and loaded.config.num_layers == 18
    few_shot = "English: cat\nFrench: chat\nEnglish: dog\nFrench: chien\nEnglish: house\nFrench:"
    assert "maison" in _greedy(loaded, few_shot, 4)
    assert "Paris" in _greedy(loaded, "Q: What is the capital of France?\nA: The capital of France is", 5)
    cached = load_model("gemma-3-270m", cache_dir=model_cache_dir)
    print(f"Gemma 3 270M first load {first:.1f}s, cached bf16 load {cached.load_seconds:.2f}s")
    assert cached.load_seconds < first
