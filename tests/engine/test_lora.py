"""LoRA adapters served mixed in one batch equal the merged-weight reference forward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modelyard.engine.loader import load_model
from modelyard.engine.lora import LoRAManager
from modelyard.errors import AdapterNotFound, InvalidRequest, OverCapacity

from .helpers import PagedDriver

PROMPT = [5, 17, 42, 99, 3, 250, 7, 8, 64]
OTHER = [12, 13, 14, 15, 16, 17]
# peft calls a transformers API that transformers 5 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _write_adapter(
    base: Path, out: Path, *, r: int, targets: list[str], seed: int, zero_b: bool = False, **kw
) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, init_lora_weights=zero_b, **kw)
    peft_model = get_peft_model(model, cfg)
    if not zero_b:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.normal_(0.0, 0.3)
    peft_model.save_pretrained(out)
    return out


def _merged_logits(base: Path, adapter: Path | None, tokens: list[int]) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float()


@pytest.fixture(scope="module")
def adapters(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "attn": _write_adapter(
            tiny_llama_dir, root / "attn", r=4, targets=["q_proj", "k_proj", "v_proj", "o_proj"], seed=1
        ),
        "mlp": _write_adapter(
            tiny_llama_dir,
            root / "mlp",
            r=8,
            targets=["gate_proj", "up_proj", "down_proj", "v_proj"],
            seed=2,
            use_rslora=True,
        ),
        "zero": _write_adapter(
            tiny_llama_dir, root / "zero", r=4, targets=["q_proj", "down_proj"], seed=3, zero_b=True
        ),
    }


def _check(ours: torch.Tensor, ref: torch.Tensor, tol: float = 2e-4) -> None:
    err = (ours - ref).abs().max().item()
    assert err <= tol * max(1.0, ref.abs().max().item()), f"max abs err {err:.3g}"


def test_zero_adapter_changes_nothing(
    tiny_llama_dir: Path, tmp_path: Path, adapters: dict[str, Path]
) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    mgr = LoRAManager(loaded.model, max_loras=2, max_rank=8)
    mgr.add("zero", adapters["zero"])
    slot = mgr.slots_for(["zero"])["zero"]
    (with_zero,) = PagedDriver(loaded.model).step([("a", PROMPT)], lora=[slot])
    (without,) = PagedDriver(loaded.model).step([("a", PROMPT)])
    assert torch.equal(with_zero, without)


def test_mixed_batch_equals_each_adapter_alone(
    tiny_llama_dir: Path, tmp_path: Path, adapters: dict[str, Path]
) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    mgr = LoRAManager(loaded.model, max_loras=3, max_rank=8)  # "attn" has rank 4: padded to 8
    mgr.add("attn", adapters["attn"])
    mgr.add("mlp", adapters["mlp"])
    slots = mgr.slots_for(["attn", "mlp"])
    ref = {
        name: _merged_logits(tiny_llama_dir, adapters.get(name), PROMPT + [1])
        for name in ("attn", "mlp", "base")
    }
    ref_other = _merged_logits(tiny_llama_dir, adapters["mlp"], OTHER + [2])
    assert (ref["attn"] - ref["base"]).abs().max() > 1e-2  # the adapters really change the output
    drv = PagedDriver(loaded.model)
    outs = drv.step(
        [("attn", PROMPT), ("mlp", PROMPT), ("base", PROMPT)], lora=[slots["attn"], slots["mlp"], 0]
    )
    for name, out in zip(("attn", "mlp", "base"), outs, strict=True):
        _check(out, ref[name][:-1])
    outs = drv.step(
        [("attn", [1]), ("o", OTHER), ("mlp", [1]), ("base", [1])],
        lora=[slots["attn"], slots["mlp"], slots["mlp"], 0],
    )
    _check(outs[0][0], ref["attn"][-1])
    _check(outs[1], ref_other[:-1])
    _check(outs[2][0], ref["mlp"][-1])
    _check(outs[3][0], ref["base"][-1])


def test_lru_eviction_and_capacity(tiny_llama_dir: Path, tmp_path: Path, adapters: dict[str, Path]) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    mgr = LoRAManager(loaded.model, max_loras=2, max_rank=8)
    for name in ("attn", "mlp", "zero"):
        mgr.add(name, adapters[name])
    assert mgr.names() == ["attn", "mlp", "zero"]
    a = mgr.slots_for(["attn"])["attn"]
    m = mgr.slots_for(["mlp"])["mlp"]
    assert {a, m} == {1, 2}
    mgr.slots_for(["attn"])  # attn is now most recently used: "mlp" is the one to go
    assert mgr.slots_for(["zero"]) == {"zero": m}
    with pytest.raises(OverCapacity):
        mgr.slots_for(["attn", "mlp", "zero"])
    slot = mgr.slots_for(["mlp"])["mlp"]  # evicts attn (LRU) and reinstalls mlp: still exact
    assert slot == a
    (out,) = PagedDriver(loaded.model).step([("x", PROMPT)], lora=[slot])
    _check(out, _merged_logits(tiny_llama_dir, adapters["mlp"], PROMPT))
    mgr.remove("mlp")
    with pytest.raises(AdapterNotFound):
        mgr.remove("mlp")
    with pytest.raises(AdapterNotFound):
        mgr.slots_for(["mlp"])
    (out,) = PagedDriver(loaded.model).step([("x", PROMPT)], lora=[slot])  # a freed slot is zero
    _check(out, _merged_logits(tiny_llama_dir, None, PROMPT))


def test_bad_adapter_folders(tiny_llama_dir: Path, tmp_path: Path, adapters: dict[str, Path]) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    mgr = LoRAManager(loaded.model, max_loras=2, max_rank=4)
    with pytest.raises(InvalidRequest, match="adapter_config.json"):
        mgr.add("missing", tmp_path / "nowhere")
    with pytest.raises(InvalidRequest, match="rank 8"):
        mgr.add("big", adapters["mlp"])
    bad = tmp_path / "bad-target"
    bad.mkdir()
    (bad / "adapter_model.safetensors").write_bytes(
        (adapters["attn"] / "adapter_model.safetensors").read_bytes()
    )
    cfg = json.loads((adapters["attn"] / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(
        json.dumps({**cfg, "target_modules": ["q_proj", "embed_tokens"]})
    )
    with pytest.raises(InvalidRequest, match="embed_tokens"):
        mgr.add("bad", bad)
    from safetensors.torch import load_file, save_file

    shapes = tmp_path / "bad-shape"
    shapes.mkdir()
    (shapes / "adapter_config.json").write_text(json.dumps(cfg))
    tensors = {
        k: torch.cat([v, v], dim=-1) if "lora_A" in k else v
        for k, v in load_file(str(adapters["attn"] / "adapter_model.safetensors")).items()
    }
    save_file(tensors, str(shapes / "adapter_model.safetensors"))
    with pytest.raises(InvalidRequest, match="do not fit"):
        mgr.add("shape", shapes)
    assert mgr.names() == []


def test_stacks_grow_with_the_widest_adapter_and_keep_residents_exact(
    tiny_llama_dir: Path, tmp_path: Path, adapters: dict[str, Path]
) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    mgr = LoRAManager(loaded.model, max_loras=2, max_rank=64)
    mgr.add("attn", adapters["attn"])  # rank 4
    q = loaded.model.layers[0].self_attn.qkv_proj
    slot_attn = mgr.slots_for(["attn"])["attn"]
    assert mgr.stack_rank == 4 and q.lora_a is not None and q.lora_a.shape[-1] == 4 * 3  # not 64 * 3
    mgr.add("mlp", adapters["mlp"])  # rank 8: the stacks regrow while "attn" is resident
    assert mgr.stack_rank == 8 and q.lora_a is not None and q.lora_a.shape[-1] == 8 * 3
    slots = mgr.slots_for(["attn", "mlp"])
    assert slots["attn"] == slot_attn
    drv = PagedDriver(loaded.model)
    outs = drv.step([("attn", PROMPT), ("mlp", PROMPT)], lora=[slots["attn"], slots["mlp"]])
    for name, out in zip(("attn", "mlp"), outs, strict=True):
        _check(out, _merged_logits(tiny_llama_dir, adapters[name], PROMPT + [1])[:-1])


def test_reused_slot_never_serves_the_previous_adapter(
    tiny_llama_dir: Path, tmp_path: Path, adapters: dict[str, Path]
) -> None:
    loaded = load_model(tiny_llama_dir, cache_dir=tmp_path, dtype=torch.float32)
    mgr = LoRAManager(loaded.model, max_loras=1, max_rank=8)
    mgr.add("attn", adapters["attn"])
    mgr.add("mlp", adapters["mlp"])
    for name in ("attn", "mlp", "attn"):  # one slot: each switch rewrites it under the same active set
        slot = mgr.slots_for([name])[name]
        assert slot == 1
        out = PagedDriver(loaded.model).step([(name, PROMPT)], lora=[slot])[0]
        _check(out, _merged_logits(tiny_llama_dir, adapters[name], PROMPT + [1])[:-1])
