"""What the engine benchmark tells a reader: the issue's targets as ratios, rich tables and progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench._common import ProgressSink, ratio


@dataclass(slots=True)
class Target:
    """One target of the issue: ``value`` compared with ``bound`` (``at_least`` or at most)."""

    name: str
    value: float | None
    bound: float
    at_least: bool

    def as_dict(self) -> dict[str, Any]:
        met = (
            None
            if self.value is None
            else (self.value >= self.bound if self.at_least else self.value <= self.bound)
        )
        return {
            "name": self.name,
            "value": self.value,
            "target": f"{'>=' if self.at_least else '<='} {self.bound}",
            "met": met,
        }


def _tput(result: dict[str, Any], contender: str, c: str) -> float | None:
    row = result.get("throughput_tok_s", {}).get(contender)
    return None if not row else row.get(c)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for this machine, computed from one run's figures (``None`` = not measured)."""
    my = lambda c: _tput(result, "modelyard", c)  # noqa: E731
    prefix = result.get("prefix_cache") or {}
    lora = result.get("lora") or {}
    quant = result.get("quant") or {}
    fp32, int8 = quant.get("fp32") or {}, quant.get("int8") or {}
    adapters = next((v for k, v in lora.items() if k.startswith("adapters") and k.endswith("_tok_s")), None)
    ppl_delta = None
    if int8.get("perplexity") and fp32.get("perplexity"):
        ppl_delta = abs(int8["perplexity"] / fp32["perplexity"] - 1)
    rows = [
        Target("c=32 modelyard / llama.cpp", ratio(my("32"), _tput(result, "llamacpp", "32")), 2.5, True),
        Target(
            "c=32 modelyard / hf static (faster dtype)",
            ratio(my("32"), _tput(result, "hf_static", "32")),
            1.3,
            True,
        ),
        Target(
            "c=32 modelyard / hf one-at-a-time",
            ratio(my("32"), _tput(result, "hf_sequential", "32")),
            10,
            True,
        ),
        Target("c=8 modelyard / llama.cpp", ratio(my("8"), _tput(result, "llamacpp", "8")), 1.5, True),
        Target("c=1 modelyard / llama.cpp", ratio(my("1"), _tput(result, "llamacpp", "1")), 0.6, True),
        Target(
            "TTFT cached / uncached prefix",
            ratio(prefix.get("ttft_cached_s"), prefix.get("ttft_uncached_s")),
            0.1,
            False,
        ),
        Target("8 adapters / no adapter throughput", ratio(adapters, lora.get("base_tok_s")), 0.75, True),
        Target(
            "int8 / fp32 weight bytes", ratio(int8.get("weight_bytes"), fp32.get("weight_bytes")), 0.30, False
        ),
        Target("int8 perplexity change vs fp32", ppl_delta, 0.03, False),
    ]
    # Issue 10's targets for a CPU without native bf16 (AVX2): listed on every run, they bind there.
    preempted = (result.get("preemptions") or {}).get("modelyard") or {}
    rows += [
        Target("AVX2: c=1 modelyard / llama.cpp", ratio(my("1"), _tput(result, "llamacpp", "1")), 0.8, True),
        Target("AVX2: c=8 modelyard / llama.cpp", ratio(my("8"), _tput(result, "llamacpp", "8")), 1.2, True),
        Target(
            "AVX2: c=32 modelyard / llama.cpp", ratio(my("32"), _tput(result, "llamacpp", "32")), 1.6, True
        ),
        Target(
            "AVX2: c=32 modelyard / hf static", ratio(my("32"), _tput(result, "hf_static", "32")), 1.3, True
        ),
        Target(
            "preemptions in the throughput runs",
            float(sum(preempted.values())) if preempted else None,
            0,
            False,
        ),
    ]
    return [t.as_dict() for t in rows]


@contextlib.contextmanager
def rich_progress() -> Iterator[ProgressSink]:
    """Progress bars on stderr, one task at a time, fed through a :class:`ProgressSink`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    current: list[Any] = []
    if not progress.console.is_terminal:
        yield _plain_progress(progress.console)
        return

    def start(label: str, total: int) -> None:
        current.append(progress.add_task(label, total=total))

    def advance(n: int) -> None:
        if current:
            progress.advance(current[-1], n)

    def done() -> None:
        if current:
            task = current.pop()
            progress.update(task, completed=progress.tasks[task].total)

    with progress:
        yield ProgressSink(start, advance, done)


def _plain_progress(console: Any) -> ProgressSink:
    """One line per finished task with its duration (for logs, where live bars do not render)."""
    from bench._common import now

    started: list[tuple[str, float]] = []

    def done() -> None:
        if started:
            label, t0 = started.pop()
            console.print(f"{label:<40} {now() - t0:7.1f} s")

    return ProgressSink(lambda label, total: started.append((label, now())), lambda n: None, done)


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def print_report(result: dict[str, Any]) -> None:
    """Tables of every section, the targets and any skips or errors, on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = result["settings"]
    conc = [str(c) for c in s["concurrencies"]]
    t = Table(
        title=f"Throughput, generated tok/s ({s['prompt_tokens']}-token prompts, {s['max_tokens']} new "
        f"tokens, {result['machine']['threads']} threads, {s['device']})"
    )
    t.add_column("contender")
    for c in conc:
        t.add_column(f"c={c}", justify="right")
    for name, row in result["throughput_tok_s"].items():
        t.add_row(name, *[_fmt((row or {}).get(c)) for c in conc])
    console.print(t)
    preempted = (result.get("preemptions") or {}).get("modelyard")
    if preempted is not None:
        console.print("modelyard preemptions: " + ", ".join(f"c={c}: {n}" for c, n in preempted.items()))
    run_config = (result.get("engine") or {}).get("run_config")
    if run_config:
        cpu = run_config.get("cpu") or {}
        console.print(
            f"modelyard chose dtype={run_config['dtype']} weights={run_config['quantization'] or 'plain'} "
            f"threads={run_config['threads']} KV={run_config['kv_cache_bytes'] / 2**20:.0f} MiB "
            f"on cpu isa={cpu.get('isa')} native_bf16={cpu.get('native_bf16')}"
        )
    if result.get("hf_best_dtype"):
        console.print(f"transformers baseline = the faster dtype per concurrency: {result['hf_best_dtype']}")
    if result.get("prefix_cache"):
        p = result["prefix_cache"]
        console.print(
            f"Prefix cache ({p['prefix_tokens']}-token prefix, {p['cached_tokens']} tokens reused): "
            f"TTFT uncached {p['ttft_uncached_s'] * 1000:.0f} ms, cached {p['ttft_cached_s'] * 1000:.0f} ms"
        )
    if result.get("lora"):
        lora = result["lora"]
        adapters = next(v for k, v in lora.items() if k.startswith("adapters") and k.endswith("_tok_s"))
        console.print(
            f"Multi-LoRA at c={lora['concurrency']}: no adapter {lora['base_tok_s']:.1f} tok/s, "
            f"{lora['adapters']} rank-{lora['rank']} adapters {adapters:.1f} tok/s"
        )
    if result.get("quant"):
        q = Table(title="Quantization (perplexity of bench/data/perplexity.txt)")
        for col in ("mode", "weight MB", "vs fp32", "perplexity", "compute dtype"):
            q.add_column(col, justify="right")
        base = (result["quant"].get("fp32") or {}).get("weight_bytes")
        for mode, f in result["quant"].items():
            q.add_row(
                mode,
                _fmt(f["weight_bytes"] / 1e6),
                _fmt(ratio(f["weight_bytes"], base), ".2f"),
                _fmt(f["perplexity"], ".3f"),
                f.get("compute_dtype", ""),
            )
        console.print(q)
    tt = Table(title="Targets of issue 2 (ratios from this run)")
    for col in ("target", "value", "bound", "met"):
        tt.add_column(col)
    for row in result.get("targets", []):
        met = {True: "[green]yes", False: "[red]no", None: "-"}[row["met"]]
        tt.add_row(row["name"], _fmt(row["value"], ".3f"), row["target"], met)
    console.print(tt)
    for name, reason in result.get("skipped", {}).items():
        console.print(f"[yellow]skipped[/] {name}: {reason}")
    for name, err in result.get("errors", {}).items():
        if not name.endswith(".traceback"):
            console.print(f"[red]error[/] {name}: {err}\n{result['errors'].get(name + '.traceback', '')}")
    console.print(f"elapsed {result.get('elapsed_s', 0):.0f} s")
