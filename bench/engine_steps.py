"""Engine step timings on SmolLM2-135M (perf work): decode step ms at batch 1/8/32 and prefill tok/s.

CPU time (``process_time``, all threads) is reported next to wall time: on this shared machine
it is the steadier figure for A/B comparisons (run with ``--threads 1``). Runs through ``LLMEngine`` (scheduler + runner + sampler, i.e. including Python overhead). Each batch
size: submit ``B`` greedy requests with 128-token prompts, step until all prefilled (timed: prefill
tok/s), then time ``--steps`` decode steps; repeated ``--repeats`` times, min and median reported.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.engine_steps [--quant int8] [--batches 1,8,32] [--profile 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quant", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", type=int, default=0, help="batch size to profile with torch.profiler")
    args = ap.parse_args()

    from modelyard.engine.config import EngineConfig
    from modelyard.engine.core import LLMEngine
    from modelyard.engine.loader import packaged_model_path
    from modelyard.engine.request import GenerateRequest, SamplingParams

    cache = Path.home() / ".cache" / "modelyard" / "bench"
    cfg = EngineConfig(
        device="cpu",
        dtype=args.dtype,
        quantization=args.quant,
        num_threads=args.threads,
        seed=0,
        max_num_seqs=64,
    )
    eng = LLMEngine.from_source(packaged_model_path("smollm2-135m-instruct"), cfg, cache_dir=cache)
    print(f"dtype={eng.dtype} quant={args.quant} threads={torch.get_num_threads()}")
    counter = [0]

    def run(b: int, steps: int) -> tuple[float, list[float]]:
        g = torch.Generator().manual_seed(counter[0])
        reqs = []
        for _ in range(b):
            counter[0] += 1
            prompt = torch.randint(100, 40000, (128,), generator=g).tolist()
            params = SamplingParams(max_tokens=steps + 4, temperature=0.0, ignore_eos=True)
            reqs.append(GenerateRequest(f"r{counter[0]}", prompt, params))
        for r in reqs:
            eng.add_request(r)
        t0 = time.perf_counter()
        while any(s.num_computed_tokens < 128 for s in _running(eng)) or eng.scheduler.waiting:
            eng.step()
        prefill_s = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(steps):
            t, c = time.perf_counter(), time.process_time()
            eng.step()
            times.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.process_time() - c) * 1e3)
        for r in reqs:
            eng.abort(r.request_id)
        return b * 128 / prefill_s, times, cpu

    run(1, 4)  # warm-up
    for b in [int(x) for x in args.batches.split(",")]:
        pf, st, ct = [], [], []
        for _ in range(args.repeats):
            p, t, c = run(b, args.steps)
            pf.append(p)
            st.append(statistics.median(t))
            ct.append(statistics.median(c))
        print(
            f"batch {b:3d}: decode step min {min(st):6.1f} med {statistics.median(st):6.1f} ms "
            f"(CPU time min {min(ct):6.1f} med {statistics.median(ct):6.1f} ms) "
            f"({b * 1e3 / min(st):6.0f} tok/s) | prefill max {max(pf):6.0f} med {statistics.median(pf):6.0f} tok/s"
        )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(args.profile, args.steps)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def _running(eng):  # type: ignore[no-untyped-def]
    return list(eng.scheduler.running)


if __name__ == "__main__":
    main()
