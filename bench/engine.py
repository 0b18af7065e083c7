"""Benchmark of modelyard's inference engine against transformers and llama.cpp on SmolLM2-135M.

    python -m bench.engine [--quick] [--json] [--device cuda] [--sections ...] [--contenders ...]

Sections (see docs/bench-engine.md for what each figure means):

- ``throughput``: ~128-token prompts, 128 generated tokens each (EOS ignored), at concurrency 1, 8
  and 32, for modelyard's engine, transformers ``generate`` one request at a time and in padded
  static batches (fp32 and bf16; the faster is the baseline), and llama.cpp's batched decode on the
  same GGUF. Throughput = generated tokens / wall time from first submission to last completion.
- ``prefix``: TTFT of a request whose 1,000-token prefix is cached vs not.
- ``lora``: throughput at concurrency 32 with 8 distinct rank-16 adapters vs no adapter.
- ``quant``: resident weight bytes and perplexity of ``bench/data/perplexity.txt`` for fp32, bf16,
  int8 and int4.

``--json`` prints one JSON object (shape in docs/bench-engine.md); otherwise rich progress bars and
tables. A contender that cannot run here (llama-cpp-python missing, ...) is listed under
``skipped``; a section that fails is listed under ``errors`` and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import _hf, _llamacpp, _modelyard
from bench._common import (
    BenchSettings,
    ProgressSink,
    configure_torch,
    hf_folder,
    make_prompts,
    now,
    packaged_gguf_path,
    text_token_ids,
)
from bench._report import print_report, targets

SECTIONS = ("throughput", "prefix", "lora", "quant")
CONTENDERS = ("modelyard", "llamacpp", "hf")


class Bench:
    """One benchmark run: fills ``self.result`` section by section (errors recorded, never raised)."""

    def __init__(
        self,
        settings: BenchSettings,
        cache_dir: Path,
        progress: ProgressSink,
        sections: tuple[str, ...] = SECTIONS,
        contenders: tuple[str, ...] = CONTENDERS,
        source: Path | None = None,
    ) -> None:
        self.s = settings
        self.cache_dir = cache_dir
        self.progress = progress
        self.sections = sections
        self.contenders = contenders
        self.result: dict[str, Any] = {
            "throughput_tok_s": {},
            "ttft_s": {},
            "prefix_cache": None,
            "lora": None,
            "quant": {},
            "load_s": {},
            "section_s": {},
            "settings": settings.as_dict(),
            "machine": _machine(settings),
            "skipped": {},
            "errors": {},
        }
        # The model under test: the packaged SmolLM2 GGUF, or any GGUF / HF folder (tests use a tiny
        # random folder). llama.cpp needs a GGUF; the other contenders read its converted HF folder.
        self.source = source or packaged_gguf_path()
        self.gguf = self.source if self.source.suffix == ".gguf" else None
        self.result["model"] = str(self.source)
        self.hf_dir: Path | None = None
        self.ids: list[int] = []

    def run(self) -> dict[str, Any]:
        start = now()
        configure_torch(self.s.threads)
        self._guard("setup", self._setup)
        if self.hf_dir is not None:
            wants_engine = "modelyard" in self.contenders and self.sections != ("quant",)
            if wants_engine or any(s in self.sections for s in ("prefix", "lora")):
                self._guard("modelyard", self._modelyard)
            if "throughput" in self.sections and "llamacpp" in self.contenders:
                self._guard("llamacpp", self._llamacpp)
            if "throughput" in self.sections and "hf" in self.contenders:
                self._guard("hf", self._hf)
            if "quant" in self.sections:
                self._guard("quant", self._quant)
        self.result["targets"] = targets(self.result)
        self.result["elapsed_s"] = now() - start
        return self.result

    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        start = now()
        try:
            fn()
        except Exception as exc:  # one broken section must not hide the others' figures
            self.result["errors"][name] = f"{type(exc).__name__}: {exc}"
            self.result["errors"][f"{name}.traceback"] = traceback.format_exc(limit=6)
        finally:
            self.result["section_s"][name] = now() - start

    def _prompts(self, n: int) -> list[list[int]]:
        return make_prompts(self.ids, n, self.s.prompt_tokens)

    def _setup(self) -> None:
        start = now()
        self.hf_dir = hf_folder(self.gguf, self.cache_dir) if self.gguf else self.source
        self.result["load_s"]["hf_folder"] = now() - start
        self.ids = text_token_ids(self.hf_dir)

    def _modelyard(self) -> None:
        s = self.s
        start = now()
        engine = _modelyard.load_engine(
            self.source, self.cache_dir, s, max_loras=s.lora_adapters, max_lora_rank=s.lora_rank
        )
        self.result["load_s"]["modelyard"] = now() - start
        self.result["engine"] = {
            "dtype": str(engine.dtype).removeprefix("torch."),
            "device": str(engine.device),
            "num_kv_blocks": engine.stats().num_kv_blocks,
            # what the engine chose from the CPU's capability (dtype, weight format, threads, KV)
            "run_config": engine.run_config,
        }
        _modelyard.warmup(engine, self.ids)
        if "throughput" in self.sections and "modelyard" in self.contenders:
            tput, ttft, preempted = {}, {}, {}
            for c in s.concurrencies:
                before = engine.stats().num_preemptions
                run = _modelyard.run_requests(
                    engine,
                    self._prompts(c),
                    s.max_tokens,
                    tag=f"tput-{c}-{now()}",
                    progress=self.progress,
                    label=f"modelyard c={c}",
                )
                tput[str(c)], ttft[str(c)] = run.tok_s, run.ttft_s
                preempted[str(c)] = engine.stats().num_preemptions - before
            self.result["throughput_tok_s"]["modelyard"] = tput
            self.result["ttft_s"]["modelyard"] = ttft
            self.result["preemptions"] = {"modelyard": preempted}
        if "prefix" in self.sections:
            self.result["prefix_cache"] = _modelyard.prefix_ttft(engine, self.ids, s, self.progress)
        if "lora" in self.sections:
            with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
                assert self.hf_dir is not None
                adapters = _modelyard.write_adapters(self.hf_dir, Path(tmp), s.lora_adapters, s.lora_rank)
                self.result["lora"] = _modelyard.lora_throughput(engine, adapters, self.ids, s, self.progress)
        stats = engine.stats()
        self.result["engine"].update(
            steps=stats.num_steps,
            preemptions=stats.num_preemptions,
            prefix_cache_queries=stats.prefix_cache_queries,
            prefix_cache_hits=stats.prefix_cache_hits,
        )

    def _llamacpp(self) -> None:
        reason = _llamacpp.available() if self.gguf else "the model under test is not a GGUF file"
        if reason is not None:
            self.result["skipped"]["llamacpp"] = reason
            self.result["throughput_tok_s"]["llamacpp"] = None
            return
        assert self.gguf is not None
        model = _llamacpp.load(self.gguf, self.s.device)
        self.result["load_s"]["llamacpp"] = model.load_s
        if self.s.device.startswith("cuda") and not model.gpu:
            # A CPU llama.cpp against a GPU engine would compare machines, not engines.
            model.close()
            self.result["skipped"]["llamacpp"] = "llama-cpp-python was built without GPU offload"
            self.result["throughput_tok_s"]["llamacpp"] = None
            return
        try:
            tput, ttft = {}, {}
            for c in self.s.concurrencies:
                run = _llamacpp.batched(
                    model,
                    self._prompts(c),
                    self.s.max_tokens,
                    self.s.threads,
                    progress=self.progress,
                    label=f"llama.cpp c={c}",
                )
                tput[str(c)], ttft[str(c)] = run.tok_s, run.ttft_s
        finally:
            model.close()
        self.result["throughput_tok_s"]["llamacpp"] = tput
        self.result["ttft_s"]["llamacpp"] = ttft

    def _hf(self) -> None:
        s, tp = self.s, self.result["throughput_tok_s"]
        assert self.hf_dir is not None
        for dtype in s.hf_dtypes:
            if (
                dtype == "bf16"
                and s.device == "cpu"
                and not _modelyard.engine_config(s, dtype="auto").resolved_dtype() == torch.bfloat16
            ):
                self.result["skipped"][f"hf.{dtype}"] = "this CPU has no native bf16 matmul"
                continue
            start = now()
            model = _hf.load_hf_model(self.hf_dir, dtype, s.device)
            self.result["load_s"][f"hf_{dtype}"] = now() - start
            _hf.warmup(model, self._prompts(2), s.device)
            # One request after another has the same rate at any concurrency: measure it once.
            one_at_a_time = _hf.sequential(
                model,
                self._prompts(s.hf_sequential_requests),
                s.max_tokens,
                s.device,
                concurrency=1,
                progress=self.progress,
                label=f"hf {dtype} one-at-a-time",
            ).tok_s
            seq = {str(c): one_at_a_time for c in s.concurrencies}
            static = {}
            for c in s.concurrencies:
                static[str(c)] = _hf.static_batch(
                    model,
                    self._prompts(c),
                    s.max_tokens,
                    s.device,
                    progress=self.progress,
                    label=f"hf {dtype} static c={c}",
                ).tok_s
            tp[f"hf_sequential_{dtype}"], tp[f"hf_static_{dtype}"] = seq, static
            del model
        best_dtype: dict[str, dict[str, str]] = {}
        for kind in ("hf_sequential", "hf_static"):
            runs = {d: tp[f"{kind}_{d}"] for d in s.hf_dtypes if f"{kind}_{d}" in tp}
            if not runs:
                continue
            tp[kind], best_dtype[kind] = {}, {}
            for c in map(str, s.concurrencies):
                d = max(runs, key=lambda d: runs[d][c])
                tp[kind][c], best_dtype[kind][c] = runs[d][c], d
        self.result["hf_best_dtype"] = best_dtype

    def _quant(self) -> None:
        figures, skipped = _modelyard.quant_figures(
            self.source, self.cache_dir, self.ids, self.s, self.progress
        )
        self.result["quant"] = figures
        self.result["skipped"].update(skipped)


def _machine(s: BenchSettings) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if s.device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "threads": s.threads,
        "device": s.device,
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _csv(value: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer tokens and repeats: under 3 minutes on 2 cores"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch / llama.cpp threads (default: usable cores)"
    )
    p.add_argument(
        "--sections",
        type=lambda v: _csv(v, SECTIONS),
        default=SECTIONS,
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    p.add_argument(
        "--contenders",
        type=lambda v: _csv(v, CONTENDERS),
        default=CONTENDERS,
        help=f"comma-separated subset of {','.join(CONTENDERS)} for the throughput section",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a GGUF file or HF folder to benchmark (default: the packaged SmolLM2-135M-Instruct GGUF)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the converted GGUF is cached (default: ~/.cache/modelyard/bench)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is visible", file=sys.stderr)
        return 2
    factory = BenchSettings.quick_run if args.quick else BenchSettings.full
    settings = factory(device=args.device, threads=args.threads)
    cache_dir = args.cache_dir or Path.home() / ".cache" / "modelyard" / "bench"
    if args.json:
        result = Bench(settings, cache_dir, ProgressSink(), args.sections, args.contenders, args.model).run()
        print(json.dumps(result, indent=2, default=str))
    else:
        from bench._report import rich_progress

        with rich_progress() as progress:
            result = Bench(settings, cache_dir, progress, args.sections, args.contenders, args.model).run()
        print_report(result)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
