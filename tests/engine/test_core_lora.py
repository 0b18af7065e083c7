"""LLMEngine with LoRA adapters: a mixed-adapter batch equals each adapter alone (and peft's merge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from modelyard.engine.request import GenerateRequest
from modelyard.errors import AdapterNotFound, Conflict

from .core_fixtures import assert_no_leak, greedy, load_tiny, make_engine, prompts, run_staggered

PROMPTS = prompts(6, seed=5, lo=6, hi=30)
# peft calls transformers' deprecated ``is_gradient_checkpointing``.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def write_adapter(base: Path, out: Path, *, r: int, targets: list[str], seed: int) -> Path:
    """A PEFT adapter folder with random (non-zero) A and B, written by peft itself."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, init_lora_weights=False)
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.3)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("core-adapters")
    return {
        "x": write_adapter(tiny_llama_dir, root / "x", r=4, targets=["q_proj", "v_proj", "o_proj"], seed=1),
        "y": write_adapter(tiny_llama_dir, root / "y", r=8, targets=["gate_proj", "down_proj"], seed=2),
    }


@pytest.fixture
def lora_engine_factory(
    tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory, adapters: dict[str, Path]
) -> Any:
    def build(**overrides: Any) -> Any:
        engine = make_engine(load_tiny(tiny_llama_dir, tmp_path_factory), **overrides)  # own model copy
        for name, path in adapters.items():
            engine.load_lora(name, path)
        return engine

    return build


LORAS = [None, "x", "y"]


def test_mixed_adapter_batch_equals_each_alone(
    lora_engine_factory: Any, tiny_llama_dir: Path, adapters: dict[str, Path]
) -> None:
    reqs = [greedy(f"r{i}", p, max_tokens=8, lora=LORAS[i % 3]) for i, p in enumerate(PROMPTS)]
    alone = {}
    for r in reqs:
        alone[r.request_id] = lora_engine_factory().generate([r])[r.request_id][0]
    mixed = lora_engine_factory(max_loras=2)
    got = run_staggered(mixed, reqs, every=1)
    assert {k: v[0] for k, v in got.items()} == alone
    assert_no_leak(mixed)
    assert alone["r1"] != lora_engine_factory().generate([greedy("b", PROMPTS[1], max_tokens=8)])["b"][0]

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32), adapters["x"]
    ).merge_and_unload()
    ids = torch.tensor([PROMPTS[1]])
    ref = merged.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=8,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    assert alone["r1"] == ref[0, len(PROMPTS[1]) :].tolist()


def test_one_adapter_seat_still_serves_all(lora_engine_factory: Any) -> None:
    reqs = [greedy(f"r{i}", p, max_tokens=6, lora=LORAS[i % 3]) for i, p in enumerate(PROMPTS)]
    ref = lora_engine_factory().generate(reqs)
    engine = lora_engine_factory(max_loras=1)
    assert engine.generate(reqs) == ref
    assert_no_leak(engine)


def test_prefix_cache_is_per_adapter(lora_engine_factory: Any) -> None:
    engine = lora_engine_factory()
    p = PROMPTS[0] + PROMPTS[1]

    def cached(rid: str, lora: str | None) -> int:
        engine.add_request(greedy(rid, p, max_tokens=2, lora=lora))
        last = None
        while engine.has_unfinished():
            for out in engine.step():
                last = out
        assert last is not None and last.usage is not None
        return last.usage.cached_tokens

    assert cached("a", "x") == 0
    assert cached("b", "y") == 0
    assert cached("c", None) == 0
    assert cached("d", "x") > 0


def test_adapter_errors(lora_engine_factory: Any, adapters: dict[str, Path]) -> None:
    engine = lora_engine_factory()
    with pytest.raises(AdapterNotFound):
        engine.add_request(greedy("z", [5, 6], lora="nope"))
    engine.add_request(greedy("busy", [5, 6, 7], max_tokens=3, lora="x"))
    with pytest.raises(Conflict):
        engine.unload_lora("x")
    while engine.has_unfinished():
        engine.step()
    engine.unload_lora("x")
    assert engine.lora_names() == ["y"]
    with pytest.raises(AdapterNotFound):
        engine.add_request(GenerateRequest("gone", [5, 6], lora="x"))
