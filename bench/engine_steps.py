"""Engine step timings (perf work): decode step ms at batch 1/8/32, prefill tok/s, c=1 tok/s.

CPU time (``process_time``, all threads) is reported next to wall time: on this shared machine
it is the steadier figure for A/B comparisons (run with ``--threads 1``). Runs through ``LLMEngine`` (scheduler + runner + sampler, i.e. including Python overhead). Each batch
size: submit ``B`` greedy requests with 128-token prompts, step until all prefilled (timed: prefill
tok/s), then time ``--steps`` decode steps; repeated ``--repeats`` times, min and median reported.
``--c1-tokens N`` adds one request of a 128-token prompt + N generated tokens (EOS ignored):
generated tokens / wall time from submission to completion, prefill included (the c=1 figure of
``bench.engine``).

``--compare-head`` (with ``--quant``) loads the model twice, LM head / embedding quantized
(``quantize_lm_head: true``) and left in the compute dtype (``false``), and interleaves their
repeats in the same run so that both see the same machine load; it prints the ratio of medians.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.engine_steps [--quant int8] [--batches 1,8,32] [--profile 1]
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.engine_steps --model gemma-3-270m --quant int8 \\
        --compare-head --batches 1 --c1-tokens 32 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

PROMPT_TOKENS = 128


class StepBench:
    """One engine and its measurements (decode step wall / CPU ms, prefill and c=1 tok/s)."""

    def __init__(self, name: str, engine: Any) -> None:
        self.name = name
        self.eng = engine
        self.counter = 0
        self.vocab = engine.model_config.vocab_size
        self.step_ms: dict[int, list[float]] = {}
        self.cpu_ms: dict[int, list[float]] = {}
        self.prefill: dict[int, list[float]] = {}
        self.c1: list[float] = []

    def _requests(self, b: int, max_tokens: int) -> list[Any]:
        from modelyard.engine.request import GenerateRequest, SamplingParams

        g = torch.Generator().manual_seed(self.counter)
        reqs = []
        for _ in range(b):
            self.counter += 1
            prompt = torch.randint(100, min(40000, self.vocab), (PROMPT_TOKENS,), generator=g).tolist()
            params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
            reqs.append(GenerateRequest(f"{self.name}-r{self.counter}", prompt, params))
        return reqs

    def decode(self, b: int, steps: int) -> None:
        eng = self.eng
        reqs = self._requests(b, steps + 4)
        for r in reqs:
            eng.add_request(r)
        t0 = time.perf_counter()
        while (
            any(s.num_computed_tokens < PROMPT_TOKENS for s in eng.scheduler.running) or eng.scheduler.waiting
        ):
            eng.step()
        self.prefill.setdefault(b, []).append(b * PROMPT_TOKENS / (time.perf_counter() - t0))
        times, cpu = [], []
        for _ in range(steps):
            t, c = time.perf_counter(), time.process_time()
            eng.step()
            times.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.process_time() - c) * 1e3)
        for r in reqs:
            eng.abort(r.request_id)
        self.step_ms.setdefault(b, []).append(statistics.median(times))
        self.cpu_ms.setdefault(b, []).append(statistics.median(cpu))

    def c1_run(self, tokens: int) -> None:
        (req,) = self._requests(1, tokens)
        t0 = time.perf_counter()
        self.eng.add_request(req)
        while self.eng.has_unfinished():
            self.eng.step()
        self.c1.append(tokens / (time.perf_counter() - t0))

    def line(self, b: int) -> str:
        st, ct, pf = self.step_ms[b], self.cpu_ms[b], self.prefill[b]
        return (
            f"{self.name:>11} batch {b:3d}: decode step min {min(st):6.1f} med {statistics.median(st):6.1f} ms "
            f"(CPU time min {min(ct):6.1f} med {statistics.median(ct):6.1f} ms) "
            f"({b * 1e3 / min(st):6.0f} tok/s) | prefill max {max(pf):6.0f} med {statistics.median(pf):6.0f} tok/s"
        )


def _engine(args: argparse.Namespace, cache: Path, quantize_head: bool) -> Any:
    from modelyard.engine.config import EngineConfig
    from modelyard.engine.core import LLMEngine
    from modelyard.engine.loader import PACKAGED, packaged_model_path

    cfg = EngineConfig(
        device="cpu",
        dtype=args.dtype,
        quantization=None if args.quant == "none" else args.quant,
        quantize_lm_head=quantize_head,
        num_threads=args.threads,
        seed=0,
        max_num_seqs=64,
    )
    source = packaged_model_path(args.model, cache_dir=cache) if args.model in PACKAGED else Path(args.model)
    return LLMEngine.from_source(source, cfg, cache_dir=cache)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct", help="packaged model name or a path")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quant", default="auto", help="auto (the engine's choice), none, int8, int4, dual")
    ap.add_argument("--compare-head", action="store_true", help="int8 vs plain LM head, interleaved")
    ap.add_argument("--c1-tokens", type=int, default=0, help="also time one 128+N-token request")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", type=int, default=0, help="batch size to profile with torch.profiler")
    args = ap.parse_args()
    if args.compare_head and args.quant in ("auto", "none"):
        ap.error("--compare-head needs --quant int8 or int4")

    cache = Path.home() / ".cache" / "modelyard" / "bench"
    heads = [True, False] if args.compare_head else [True]
    benches = [
        StepBench("int8 head" if h and args.quant else "plain head", _engine(args, cache, h)) for h in heads
    ]
    eng = benches[0].eng
    print(f"model={args.model} {eng.run_config}")
    batches = [int(x) for x in args.batches.split(",")]
    for bench in benches:
        bench.decode(1, 4)  # warm-up
        for b in batches:
            bench.step_ms.pop(b, None), bench.cpu_ms.pop(b, None), bench.prefill.pop(b, None)
    for _ in range(args.repeats):
        for b in batches:
            for bench in benches:
                bench.decode(b, args.steps)
        if args.c1_tokens:
            for bench in benches:
                bench.c1_run(args.c1_tokens)
    for b in batches:
        for bench in benches:
            print(bench.line(b))
        if len(benches) == 2:
            a, p = benches
            print(
                f"  ratio int8/plain head, batch {b}: decode step wall "
                f"{statistics.median(a.step_ms[b]) / statistics.median(p.step_ms[b]):.2f}, CPU time "
                f"{statistics.median(a.cpu_ms[b]) / statistics.median(p.cpu_ms[b]):.2f}"
            )
    if args.c1_tokens:
        for bench in benches:
            c1 = bench.c1
            print(
                f"{bench.name:>11} c=1 ({PROMPT_TOKENS}+{args.c1_tokens} tokens): "
                f"min {min(c1):.1f} med {statistics.median(c1):.1f} max {max(c1):.1f} tok/s"
            )
        if len(benches) == 2:
            print(
                f"  ratio int8/plain head, c=1 tok/s: "
                f"{statistics.median(benches[0].c1) / statistics.median(benches[1].c1):.2f}"
            )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            benches[0].decode(args.profile, args.steps)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
