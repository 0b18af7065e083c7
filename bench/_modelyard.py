"""modelyard's own engine under test: throughput, prefix-cache TTFT, multi-LoRA and quantization quality.

Everything runs through the public engine objects (``LLMEngine`` ``add_request`` / ``step``), except
perplexity, which runs one prefill of the fixed text through the model's ``forward`` on a private
paged KV cache (the engine has no prompt-logprobs API).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from bench._common import BenchSettings, ProgressSink, ThroughputRun, make_prompts, now, sync

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def engine_config(settings: BenchSettings, **overrides: Any) -> Any:
    """The engine settings every section shares: the engine's own defaults, on the bench device."""
    from modelyard.engine.config import EngineConfig

    cfg: dict[str, Any] = dict(device=settings.device, num_threads=settings.threads, seed=0, max_num_seqs=64)
    cfg.update(overrides)
    return EngineConfig(**cfg)


def load_engine(gguf: Path, cache_dir: Path, settings: BenchSettings, **overrides: Any) -> Any:
    from modelyard.engine.core import LLMEngine

    return LLMEngine.from_source(gguf, engine_config(settings, **overrides), cache_dir=cache_dir)


def _greedy_request(request_id: str, prompt: list[int], max_tokens: int, **kw: Any) -> Any:
    from modelyard.engine.request import GenerateRequest, SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    return GenerateRequest(request_id, prompt, params, **kw)


def run_requests(
    engine: Any,
    prompts: list[list[int]],
    max_tokens: int,
    *,
    tag: str,
    loras: list[str | None] | None = None,
    progress: ProgressSink | None = None,
    label: str = "modelyard",
) -> ThroughputRun:
    """Submit all ``prompts`` at once and step until every one finished.

    ``tag`` names the run: request ids and the prefix-cache salt derive from it, so no run reuses
    another run's cached prompt blocks. TTFT is the median time to each request's first output.
    """
    progress = progress or ProgressSink()
    loras = loras or [None] * len(prompts)
    requests = [
        _greedy_request(f"{tag}-{i}", p, max_tokens, lora=lora, cache_salt=tag)
        for i, (p, lora) in enumerate(zip(prompts, loras, strict=True))
    ]
    first: dict[str, float] = {}
    tokens: dict[str, list[int]] = {r.request_id: [] for r in requests}
    generated = 0
    with progress.task(label, len(prompts) * max_tokens):
        start = now()
        for r in requests:
            engine.add_request(r)
        while engine.has_unfinished():
            outputs = engine.step()
            t = now() - start
            for o in outputs:
                first.setdefault(o.request_id, t)
                tokens[o.request_id].extend(o.token_ids)
                generated += len(o.token_ids)
                progress.advance(len(o.token_ids))
        sync(str(engine.device))
        wall = now() - start
    if generated != len(prompts) * max_tokens:
        raise RuntimeError(f"modelyard generated {generated} tokens, expected {len(prompts) * max_tokens}")
    ttft = statistics.median(first.values()) if first else None
    return ThroughputRun(label, len(prompts), len(prompts), generated, wall, ttft, list(tokens.values()))


def warmup(engine: Any, ids: list[int], loras: list[str | None] | None = None) -> None:
    """A short untimed run: first-call allocations, kernel selection, adapter residency."""
    n = len(loras) if loras else 2
    run_requests(engine, make_prompts(ids, n, 24, salt=991), 3, tag=f"warmup-{now()}", loras=loras)


def prefix_ttft(
    engine: Any, ids: list[int], settings: BenchSettings, progress: ProgressSink
) -> dict[str, Any]:
    """TTFT of a request whose ``prefix_tokens`` prefix is not cached, then of one whose prefix is.

    Each repeat uses a fresh prefix (and salt) for the cold request, then the same prefix with a
    different suffix for the warm one; the medians are reported.
    """
    cold: list[float] = []
    warm: list[float] = []
    cached_tokens: list[int] = []
    with progress.task("prefix cache TTFT", settings.prefix_repeats):
        for r in range(settings.prefix_repeats):
            prefix = make_prompts(ids, 1, settings.prefix_tokens, salt=500 + r)[0]
            suffixes = make_prompts(ids, 2, settings.prefix_suffix_tokens, salt=700 + r)
            salt = f"prefix-{r}-{now()}"
            cold.append(_ttft(engine, prefix + suffixes[0], f"{salt}-cold", salt)[0])
            t, cached = _ttft(engine, prefix + suffixes[1], f"{salt}-warm", salt)
            warm.append(t)
            cached_tokens.append(cached)
            progress.advance(1)
    return {
        "ttft_uncached_s": statistics.median(cold),
        "ttft_cached_s": statistics.median(warm),
        "prefix_tokens": settings.prefix_tokens,
        "prompt_tokens": settings.prefix_tokens + settings.prefix_suffix_tokens,
        "cached_tokens": min(cached_tokens),
        "repeats": settings.prefix_repeats,
    }


def _ttft(engine: Any, prompt: list[int], request_id: str, salt: str) -> tuple[float, int]:
    """(seconds to the first output, cached prompt tokens) of one single-token request."""
    engine.add_request(_greedy_request(request_id, prompt, 1, cache_salt=salt))
    start = now()
    ttft: float | None = None
    cached = 0
    while engine.has_unfinished():
        for o in engine.step():
            if ttft is None:
                ttft = now() - start
            if o.usage is not None:
                cached = o.usage.cached_tokens
    if ttft is None:
        raise RuntimeError("the prefix-cache request produced no output")
    return ttft, cached


def write_adapters(hf_dir: Path, out_dir: Path, count: int, rank: int, *, seed: int = 0) -> list[Path]:
    """``count`` random PEFT LoRA folders of ``rank`` on every attention and MLP projection.

    Written by hand with PEFT's file layout and key names (what ``save_pretrained`` produces);
    B is non-zero so the adapters really change the output.
    """
    from safetensors.torch import save_file

    cfg = json.loads((hf_dir / "config.json").read_text())
    hidden, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    heads, kv_heads = (
        int(cfg["num_attention_heads"]),
        int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
    )
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    shapes = {  # target -> (in_features, out_features)
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    gen = torch.Generator().manual_seed(seed)
    folders = []
    for a in range(count):
        folder = out_dir / f"adapter-{a}"
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for layer in range(int(cfg["num_hidden_layers"])):
            for target in LORA_TARGETS:
                fan_in, fan_out = shapes[target]
                part = "self_attn" if target in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
                key = f"base_model.model.model.layers.{layer}.{part}.{target}"
                tensors[f"{key}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen) / math.sqrt(fan_in)
                tensors[f"{key}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen) * 0.01
        save_file(tensors, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(
            json.dumps(
                {
                    "peft_type": "LORA",
                    "task_type": "CAUSAL_LM",
                    "r": rank,
                    "lora_alpha": 2 * rank,
                    "lora_dropout": 0.0,
                    "bias": "none",
                    "target_modules": list(LORA_TARGETS),
                    "base_model_name_or_path": str(hf_dir),
                }
            )
        )
        folders.append(folder)
    return folders


def lora_throughput(
    engine: Any, adapters: list[Path], ids: list[int], settings: BenchSettings, progress: ProgressSink
) -> dict[str, Any]:
    """Throughput at ``lora_concurrency`` with no adapter, then with the adapters spread round-robin."""
    names = [f"bench-{i}" for i in range(len(adapters))]
    for name, path in zip(names, adapters, strict=True):
        engine.load_lora(name, path)
    warmup(engine, ids, loras=list(names))
    n = settings.lora_concurrency
    prompts = make_prompts(ids, n, settings.prompt_tokens, salt=31)
    base = run_requests(
        engine,
        prompts,
        settings.lora_max_tokens,
        tag=f"lora-base-{now()}",
        progress=progress,
        label=f"modelyard c={n} no adapter",
    )
    mixed = run_requests(
        engine,
        prompts,
        settings.lora_max_tokens,
        tag=f"lora-mixed-{now()}",
        loras=[names[i % len(names)] for i in range(n)],
        progress=progress,
        label=f"modelyard c={n} {len(names)} adapters",
    )
    return {
        "base_tok_s": base.tok_s,
        f"adapters{len(names)}_tok_s": mixed.tok_s,
        "concurrency": n,
        "adapters": len(names),
        "rank": settings.lora_rank,
        "max_tokens": settings.lora_max_tokens,
    }


def weight_bytes(model: torch.nn.Module, *, linear_only: bool = False) -> int | None:
    """Resident bytes of the model's weights (``linear_only``: of the decoder's Linear layers only).

    The engine's own count (``modelyard.engine.quant.weight_bytes``) when it has one; else the
    bytes of every distinct parameter storage (``None`` for ``linear_only``).
    """
    try:
        from modelyard.engine.quant import weight_bytes as engine_weight_bytes

        return int(engine_weight_bytes(model, linear_only=linear_only))
    except ImportError:
        if linear_only:
            return None
        seen: set[int] = set()
        total = 0
        for t in [*model.parameters(), *model.buffers()]:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()
        return total


@torch.inference_mode()
def perplexity(model: Any, ids: list[int], device: str, *, block_size: int = 16, chunk: int = 256) -> float:
    """exp(mean NLL) of ``ids[1:]`` given the preceding tokens: one causal prefill of the whole text."""
    from modelyard.engine.forward_batch import ForwardBatch
    from modelyard.engine.layers.attention import prepare_attention

    cfg = model.config
    dtype = getattr(model, "dtype", torch.bfloat16)
    n = len(ids)
    blocks = -(-n // block_size)
    shape = (cfg.num_kv_heads, blocks + 1, block_size, cfg.head_dim)
    kv = [
        (torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
        for _ in range(cfg.num_layers)
    ]
    table = list(range(1, blocks + 1))  # block 0 left unused, as the engine does for padding
    pos = torch.arange(n, device=device)
    batch = ForwardBatch(
        input_ids=torch.tensor(ids, dtype=torch.int64, device=device),
        positions=pos,
        slot_mapping=torch.tensor(table, device=device)[pos // block_size] * block_size + pos % block_size,
        query_lens=[n],
        context_lens=torch.tensor([n], device=device),
        block_tables=torch.tensor([table], device=device),
        logits_indices=torch.arange(n - 1, device=device),
        block_size=block_size,
    )
    prepare_attention(batch)
    hidden = model.forward(batch, kv)
    targets = batch.input_ids[1:]
    nll = torch.zeros((), dtype=torch.float64, device=device)
    for s in range(0, n - 1, chunk):
        logits = model.compute_logits(hidden[s : min(s + chunk, n - 1)]).float()
        nll += torch.nn.functional.cross_entropy(logits, targets[s : s + chunk], reduction="sum").double()
    return math.exp(nll.item() / (n - 1))


def quant_figures(
    gguf: Path, cache_dir: Path, ids: list[int], settings: BenchSettings, progress: ProgressSink
) -> tuple[dict[str, Any], dict[str, str]]:
    """Per mode (fp32, bf16, int8, int4): resident weight bytes and perplexity of the fixed text.

    Integer modes quantize a bf16 model (fp32 where the device lacks fast bf16, as the engine picks),
    LM head and embedding included; ``*_plain_head`` modes leave those in the compute dtype
    (``quantize_lm_head: false``).
    Returns ``(figures, skipped)``; a mode the engine refuses is skipped with its reason.
    """
    from modelyard.engine.loader import load_model

    text = ids[: settings.perplexity_tokens]
    compute = engine_config(settings).resolved_dtype()
    figures: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with progress.task("quantization", len(settings.quant_modes)):
        for mode in settings.quant_modes:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(mode, compute)
            quant = mode.removesuffix("_plain_head") if mode.startswith("int") else None
            try:
                loaded = load_model(
                    gguf,
                    cache_dir=cache_dir,
                    dtype=dtype,
                    device=settings.device,
                    quantization=quant,
                    quantize_head=not mode.endswith("_plain_head"),
                )
            except Exception as exc:  # a mode the engine does not support here is reported, not fatal
                skipped[f"quant.{mode}"] = f"{type(exc).__name__}: {exc}"
                progress.advance(1)
                continue
            start = now()
            ppl = perplexity(loaded.model, text, settings.device)
            figures[mode] = {
                "weight_bytes": weight_bytes(loaded.model),
                "linear_weight_bytes": weight_bytes(loaded.model, linear_only=True),
                "perplexity": ppl,
                "compute_dtype": str(dtype).removeprefix("torch."),
                "forward_s": now() - start,
                "tokens": len(text),
            }
            del loaded
            progress.advance(1)
    return figures, skipped
