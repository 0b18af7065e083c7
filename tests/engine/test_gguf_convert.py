"""The direct GGUF conversion equals transformers' GGUF path: every tensor bit for bit, config.json,
and the tokenizer files. A tiny Llama GGUF written here (Q8_0 / Q4_0 / Q4_1 / F32, grouped-query
attention so the Q/K un-permutation is exercised) runs in every test pass; the packaged models are
compared in the slow tier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modelyard.engine.gguf_convert import convert_gguf, read_gguf
from modelyard.engine.loader import _load_tokenizer, load_model, packaged_model_path
from modelyard.errors import ConfigError

from .helpers import PagedDriver


def write_tiny_llama_gguf(path: Path) -> Path:
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFWriter
    from gguf.quants import quantize

    rng = np.random.default_rng(0)
    d, ff, layers, heads, kv, vocab = 64, 128, 2, 4, 2, 96
    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(d // heads)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([chr(0x21 + i) for i in range(vocab - 1)] + ['!"'])
    w.add_token_types([1] * vocab)
    w.add_token_merges(['! "'])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)

    def tensor(name: str, shape: tuple[int, ...], qtype: Q) -> None:
        x = rng.standard_normal(shape).astype(np.float32)
        if qtype == Q.F32:
            w.add_tensor(name, x)
            return
        q = quantize(x, qtype)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    tensor("token_embd.weight", (vocab, d), Q.Q8_0)
    tensor("output_norm.weight", (d,), Q.F32)
    tensor("output.weight", (vocab, d), Q.Q8_0)
    for i in range(layers):
        tensor(f"blk.{i}.attn_norm.weight", (d,), Q.F32)
        tensor(f"blk.{i}.ffn_norm.weight", (d,), Q.F32)
        tensor(f"blk.{i}.attn_q.weight", (d, d), Q.Q8_0)
        tensor(f"blk.{i}.attn_k.weight", (kv * d // heads, d), Q.Q8_0)
        tensor(f"blk.{i}.attn_v.weight", (kv * d // heads, d), Q.Q8_0)
        tensor(f"blk.{i}.attn_output.weight", (d, d), Q.Q4_0)
        tensor(f"blk.{i}.ffn_gate.weight", (ff, d), Q.Q4_1)
        tensor(f"blk.{i}.ffn_up.weight", (ff, d), Q.Q8_0)
        tensor(f"blk.{i}.ffn_down.weight", (d, ff), Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def transformers_reference(gguf: Path, out: Path) -> dict[str, torch.Tensor]:
    """What transformers' GGUF path makes of ``gguf``: its state dict; config and tokenizer saved in ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    tied = bool(model.config.tie_word_embeddings)
    return {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}


def assert_same_conversion(gguf: Path, tmp: Path) -> None:
    ref_dir, new_dir = tmp / "transformers", tmp / "direct"
    ref_dir.mkdir()
    new_dir.mkdir()
    reference = transformers_reference(gguf, ref_dir)
    convert_gguf(gguf, new_dir)
    converted = load_file(new_dir / "model.safetensors")
    assert sorted(converted) == sorted(reference)
    unequal = [k for k in reference if not torch.equal(converted[k], reference[k].contiguous())]
    assert unequal == []
    assert json.loads((new_dir / "config.json").read_text()) == json.loads(
        (ref_dir / "config.json").read_text()
    )
    tokenizer_files = sorted(p.name for p in ref_dir.iterdir() if p.name != "config.json")
    assert tokenizer_files and tokenizer_files == sorted(
        p.name for p in new_dir.iterdir() if p.name not in ("config.json", "model.safetensors")
    )
    for name in tokenizer_files:
        assert (new_dir / name).read_text() == (ref_dir / name).read_text(), name
    assert_same_tokenizer(new_dir)


def assert_same_tokenizer(folder: Path) -> None:
    """The loader's direct tokenizer build behaves as ``from_pretrained`` does on the same folder."""
    from transformers import PreTrainedTokenizerFast

    ours, reference = _load_tokenizer(folder), PreTrainedTokenizerFast.from_pretrained(folder)
    texts = [
        "Hello world!",
        '!"#$ abc',
        "<|im_start|>user\nWhat?<|im_end|>",
        "  two  spaces\n\nend",
        "東京 🙂",
    ]
    for text in texts:
        for special in (True, False):
            assert (
                ours(text, add_special_tokens=special)["input_ids"]
                == reference(text, add_special_tokens=special)["input_ids"]
            )
    assert ours.chat_template == reference.chat_template
    assert ours.special_tokens_map == reference.special_tokens_map
    assert ours.get_added_vocab() == reference.get_added_vocab() and len(ours) == len(reference)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_tiny_llama_conversion_equals_transformers(tmp_path: Path) -> None:
    assert_same_conversion(write_tiny_llama_gguf(tmp_path / "tiny.gguf"), tmp_path)


def test_tiny_gguf_loads_and_logits_match_the_transformers_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    gguf = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    loaded = load_model(gguf, cache_dir=tmp_path / "cache", dtype=torch.float32)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "cache" / loaded.digest, dtype=torch.float32).eval()
    ids = torch.tensor([[0, 5, 17, 42, 3]])
    with torch.no_grad():
        ref = hf(ids).logits[0]
    (ours,) = PagedDriver(loaded.model, num_blocks=8, block_size=16).step([("s", ids[0].tolist())])
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_metadata_reader_and_unsupported_architecture(tmp_path: Path) -> None:
    gguf = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    parsed = read_gguf(gguf)
    assert parsed.architecture == "llama" and len(parsed.tensors) == 21
    assert parsed.metadata["llama.attention.head_count_kv"] == 2
    assert len(parsed.metadata["tokenizer.ggml.tokens"]) == 96
    other = tmp_path / "other.gguf"
    other.write_bytes(gguf.read_bytes().replace(b"llama", b"llamb", 1))
    with pytest.raises(ConfigError, match="not supported"):
        convert_gguf(other, tmp_path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_packaged_model_conversion_equals_transformers(name: str, tmp_path: Path) -> None:
    assert_same_conversion(packaged_model_path(name, cache_dir=tmp_path), tmp_path)
