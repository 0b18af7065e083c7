"""``quantization: dual`` (dense weights + compact copies for small batches) and the auto choice.

- a dual model's large batches (more than ``DUAL_MAX_ROWS`` rows) give exactly the dense model's
  logits; its small batches match an fp32 model holding the int8-rounded weights (3e-2, the bf16
  activations of the kernels, as for ``int8``);
- the compact copy is int4 only where the weight round-trips through int4 exactly;
- LoRA and prefix caching work on it through the engine; on SmolLM2 (Q4_1 checkpoint) every
  decoder Linear gets an exact int4 copy and greedy decoding equals the fp32 model's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelyard.engine.layers.linear import DUAL_MAX_ROWS, Int4Weight, Int8Weight, Linear
from modelyard.engine.loader import load_model, packaged_model_path
from modelyard.engine.quant import fake_quantize, int4_is_exact, weight_bytes

from .core_fixtures import greedy, make_engine, prompts
from .helpers import PagedDriver
from .test_quant import PROMPT, _rel, _round_like_quantize_

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _load(folder: Path, tmp_path: Path, quantization: str | None = None):
    return load_model(folder, cache_dir=tmp_path, dtype=torch.float32, quantization=quantization)


def test_dual_keeps_dense_weights_and_int8_copies(tiny_llama_dir: Path, tmp_path: Path) -> None:
    dense = _load(tiny_llama_dir, tmp_path).model
    dual = _load(tiny_llama_dir, tmp_path, "dual").model
    linears = [m for m in dual.layers.modules() if isinstance(m, Linear)]
    assert linears and all(m.weight is not None for m in linears)
    # random Gaussian weights are not 4-bit: int8 copies
    assert all(isinstance(m.qweight, Int8Weight) for m in linears)
    assert weight_bytes(dense) < weight_bytes(dual) < 1.3 * weight_bytes(dense)

    long_prompt = PROMPT * 2  # 22 rows > DUAL_MAX_ROWS: the dense weights
    assert len(long_prompt) > DUAL_MAX_ROWS
    (ref_long,) = PagedDriver(dense).step([("b", long_prompt)])
    (got_long,) = PagedDriver(dual).step([("b", long_prompt)])
    assert torch.equal(got_long, ref_long)

    rounded = _load(tiny_llama_dir, tmp_path).model
    _round_like_quantize_(rounded, "int8", head=False)
    # the untied tiny Llama's head gets an int8 copy in dual too: round the reference's head alike
    assert isinstance(dual.lm_head.qweight, Int8Weight) and dual.lm_head.weight is not None
    rounded.lm_head.weight.data.copy_(fake_quantize(dense.lm_head.weight.data, "int8"))
    small = PROMPT[:DUAL_MAX_ROWS]
    drv_ref, drv_dual = PagedDriver(rounded), PagedDriver(dual)
    (ref_small,) = drv_ref.step([("a", small)])
    (got_small,) = drv_dual.step([("a", small)])
    (ref_dec,) = drv_ref.step([("a", [9])])
    (got_dec,) = drv_dual.step([("a", [9])])
    assert _rel(got_small, ref_small) < 3e-2
    assert _rel(got_dec, ref_dec) < 3e-2
    assert not torch.equal(got_small, PagedDriver(dense).step([("a", small)])[0])  # the copies ran


def test_int4_copy_only_where_exact() -> None:
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (64, 128), generator=g).float()
    codes[:, ::32] = 0  # every group uses its lowest and highest code, as GGUF Q4_1 blocks do
    codes[:, 1::32] = 15
    scale = torch.rand(64, 4, 1, generator=g) * 0.01 + 1e-3
    low = torch.randn(64, 4, 1, generator=g) * 0.01
    four_bit = (codes.view(64, 4, 32) * scale + low).view(64, 128)
    assert int4_is_exact(four_bit, 32)
    assert not int4_is_exact(torch.randn(64, 128, generator=g), 32)


def test_engine_on_dual_weights_lora_and_prefix_cache(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from .test_lora import _write_adapter

    loaded = _load(tiny_llama_dir, tmp_path, "dual")
    adapter = _write_adapter(tiny_llama_dir, tmp_path / "ad", r=4, targets=["q_proj", "down_proj"], seed=3)
    on = make_engine(loaded, quantization="dual")
    off = make_engine(loaded, quantization="dual", enable_prefix_caching=False)
    for eng in (on, off):
        eng.load_lora("ad", adapter)
    shared = prompts(1, seed=4, lo=20, hi=21)[0]
    reqs = [(f"r{i}", shared + p, "ad" if i % 2 else None) for i, p in enumerate(prompts(4, seed=5))]
    results = []
    for eng in (on, off):
        out = {}
        for rid, p, lora in reqs:  # one at a time: every decode step has 1 row (the int8 copies)
            out.update(eng.generate([greedy(rid, p, 6, lora=lora)]))
        results.append(out)
    assert results[0] == results[1]
    assert on.stats().prefix_cache_hits > 0
    assert on.stats().kv_cache_usage == 0


@pytest.mark.slow
def test_smollm2_dual_is_int4_exact_and_greedy_equal(smollm2_loaded, model_cache_dir: Path) -> None:
    source = packaged_model_path("smollm2-135m-instruct")
    dual = load_model(source, cache_dir=model_cache_dir, dtype=torch.float32, quantization="dual")
    linears = [m for m in dual.model.layers.modules() if isinstance(m, Linear)]
    assert all(isinstance(m.qweight, Int4Weight) for m in linears)  # Q4_1 blocks: exact int4
    ids = smollm2_loaded.tokenizer("The capital of France is")["input_ids"]
    tokens = []
    for loaded in (smollm2_loaded, dual):
        eng = make_engine(loaded, block_size=16, num_kv_blocks=64)
        tokens.append(eng.generate([greedy("a", ids, 12)])["a"])
    assert tokens[0] == tokens[1]
