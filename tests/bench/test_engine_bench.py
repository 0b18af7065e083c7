"""Smoke tests of ``bench/engine.py``: every section on a tiny random Llama, the JSON shape, and
the baselines doing the same work as the engine (same greedy tokens, same perplexity)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import bench._hf as _hf
import bench._modelyard as _modelyard
import pytest
import torch
from bench._common import BenchSettings, ProgressSink, make_prompts, packaged_gguf_path, text_token_ids
from bench._report import print_report
from bench.engine import Bench, parse_args

from engine.helpers import write_tiny_llama


def tiny_settings() -> BenchSettings:
    return BenchSettings(
        threads=2,
        concurrencies=(1, 3),
        prompt_tokens=10,
        max_tokens=4,
        hf_sequential_requests=2,
        prefix_tokens=40,
        prefix_suffix_tokens=4,
        prefix_repeats=1,
        lora_adapters=2,
        lora_rank=4,
        lora_concurrency=3,
        lora_max_tokens=3,
        quant_modes=("fp32", "bf16", "int8"),
        perplexity_tokens=48,
        quick=True,
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_result(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cache = tmp_path_factory.mktemp("bench-cache")
    return Bench(tiny_settings(), cache, ProgressSink(), source=tiny_dir).run()


def test_prompts_are_distinct_and_share_no_prefix() -> None:
    ids = list(range(1000))
    prompts = make_prompts(ids, 32, 128)
    assert all(len(p) == 128 for p in prompts)
    assert len({tuple(p[:16]) for p in prompts}) == 32  # no shared first KV block
    assert make_prompts(ids, 32, 128) == prompts
    assert make_prompts(ids, 1, 128, salt=1)[0] not in prompts


def test_json_has_the_documented_shape(tiny_result: dict[str, Any]) -> None:
    r = json.loads(json.dumps(tiny_result))
    assert r["errors"] == {}
    tput = r["throughput_tok_s"]
    for contender in ("modelyard", "hf_sequential", "hf_static", "hf_sequential_fp32", "hf_static_fp32"):
        assert set(tput[contender]) == {"1", "3"}
        assert all(v > 0 for v in tput[contender].values())
    assert tput["llamacpp"] is None and "not a GGUF" in r["skipped"]["llamacpp"]
    assert set(r["hf_best_dtype"]["hf_static"]) == {"1", "3"}

    prefix = r["prefix_cache"]
    assert prefix["ttft_uncached_s"] > 0 and prefix["ttft_cached_s"] > 0
    assert 0 < prefix["cached_tokens"] <= prefix["prefix_tokens"]

    assert r["lora"]["base_tok_s"] > 0 and r["lora"]["adapters2_tok_s"] > 0

    quant = r["quant"]
    assert set(quant) == {"fp32", "bf16", "int8"}
    for figures in quant.values():
        assert figures["weight_bytes"] > 0 and 1 < figures["perplexity"] < 1e6
    assert quant["int8"]["weight_bytes"] < quant["bf16"]["weight_bytes"] < quant["fp32"]["weight_bytes"]

    names = [t["name"] for t in r["targets"]]
    assert len(names) == 14 and all(set(t) == {"name", "value", "target", "met"} for t in r["targets"])
    # the engine's own choice from the CPU's capability, and preemptions per concurrency
    run_config = r["engine"]["run_config"]
    assert run_config["cpu"]["isa"] and isinstance(run_config["cpu"]["native_bf16"], bool)
    assert run_config["dtype"] == r["engine"]["dtype"] and run_config["threads"] >= 1
    assert run_config["kv_cache_bytes"] > 0
    assert set(r["preemptions"]["modelyard"]) == {"1", "3"}
    assert all(n == 0 for n in r["preemptions"]["modelyard"].values())
    no_preemption = next(t for t in r["targets"] if t["name"].startswith("preemptions"))
    assert no_preemption["met"] is True
    lora_ratio = next(t for t in r["targets"] if t["name"].startswith("8 adapters"))
    assert lora_ratio["value"] == pytest.approx(r["lora"]["adapters2_tok_s"] / r["lora"]["base_tok_s"])


def test_report_prints_every_section(tiny_result: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    print_report(tiny_result)
    out = capsys.readouterr().out
    for text in (
        "Throughput",
        "modelyard",
        "hf_static",
        "Prefix cache",
        "Multi-LoRA",
        "Quantization",
        "Targets",
        "modelyard preemptions: c=1: 0",
        "modelyard chose dtype=",
    ):
        assert text in out


def test_engine_and_transformers_generate_the_same_tokens(tiny_dir: Path, tmp_path: Path) -> None:
    settings = tiny_settings()
    ids = text_token_ids(tiny_dir)
    prompts = make_prompts(ids, 3, 10)
    engine = _modelyard.load_engine(tiny_dir, tmp_path, settings, dtype="float32")
    mine = _modelyard.run_requests(engine, prompts, 6, tag="same-tokens")
    model = _hf.load_hf_model(tiny_dir, "fp32", "cpu")
    static = _hf.static_batch(model, prompts, 6, "cpu", progress=ProgressSink(), label="hf")
    seq = _hf.sequential(model, prompts, 6, "cpu", concurrency=3, progress=ProgressSink(), label="hf")
    assert mine.tokens == static.tokens == seq.tokens
    assert mine.generated_tokens == static.generated_tokens == 18


def test_perplexity_matches_transformers(tiny_dir: Path, tmp_path: Path) -> None:
    from modelyard.engine.loader import load_model

    ids = text_token_ids(tiny_dir)[:64]
    loaded = load_model(tiny_dir, cache_dir=tmp_path, dtype=torch.float32)
    mine = _modelyard.perplexity(loaded.model, ids, "cpu", chunk=16)
    model = _hf.load_hf_model(tiny_dir, "fp32", "cpu")
    with torch.inference_mode():
        loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert mine == pytest.approx(math.exp(loss), rel=1e-4)


def test_cli_rejects_unknown_sections() -> None:
    assert parse_args(["--quick", "--sections", "prefix,lora"]).sections == ("prefix", "lora")
    with pytest.raises(SystemExit):
        parse_args(["--sections", "nope"])
    with pytest.raises(argparse.ArgumentTypeError):
        from bench.engine import _csv

        _csv("throughput,bogus", ("throughput",))


@pytest.mark.slow
def test_llamacpp_batched_decode_equals_alone_and_agrees_with_transformers(tmp_path: Path) -> None:
    import bench._llamacpp as _llamacpp
    from bench._common import hf_folder

    if _llamacpp.available() is not None:
        pytest.skip(_llamacpp.available())
    gguf = packaged_gguf_path()
    folder = hf_folder(gguf, tmp_path)
    prompts = make_prompts(text_token_ids(folder), 3, 32)
    model = _llamacpp.load(gguf, "cpu")
    try:
        together = _llamacpp.batched(model, prompts, 6, 2, progress=ProgressSink())
        alone = [_llamacpp.batched(model, [p], 6, 2, progress=ProgressSink()).tokens[0] for p in prompts]
    finally:
        model.close()
    assert together.tokens == alone
    assert together.generated_tokens == 18
    hf = _hf.static_batch(
        _hf.load_hf_model(folder, "fp32", "cpu"), prompts, 6, "cpu", progress=ProgressSink(), label="hf"
    )
    # Same weights (Q4_1 vs its dequantised copy); llama.cpp quantizes activations, so only the
    # first greedy token of each prompt is expected to agree.
    assert [t[0] for t in together.tokens] == [t[0] for t in hf.tokens]
