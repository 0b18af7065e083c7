"""How long ``modelyard serve`` takes to start: cold (empty cache) and warm (every conversion cached).

    python -m bench.startup [--warm-runs 2] [--json] [--keep DIR]

Each run launches ``python -m modelyard.cli serve`` with the default models (SmolLM2-135M-Instruct,
Gemma 3 270M, all-MiniLM-L6-v2) on a free port, in a temporary data dir whose model cache starts
empty for the cold run and is reused by the warm runs. Per run it reports, in seconds from launch:

- ``ready_s``: ``GET /ready`` answers 200 (every model loaded);
- per model ``first_token_s``: the first streamed completion token (generative models) or the first
  embedding (embedders), asked for from launch on and retried on 503 until the model answers;
- ``cpu_s``: CPU seconds the server process used up to ``ready_s`` (a figure that other load on the
  machine disturbs less than wall time), and ``load_average_1m`` after the run, to judge the rest.

``--json`` prints one JSON document (``version``, ``cpu``, ``runs``); otherwise a rich table rendered
from the same document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

VERSION = 1
GENERATIVE = ("smollm2-135m-instruct", "gemma-3-270m")
EMBEDDERS = ("all-minilm-l6-v2",)
POLL_S = 0.05
RUN_TIMEOUT_S = 900.0


def cpu_description() -> dict[str, Any]:
    """The CPU model, its logical CPUs available to us, and the ISA features that change the figures."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    forced = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ}
    return {"model": model, "cpus": cpus, "features": [f for f in wanted if f in flags], "forced_isa": forced}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _first_answer(client: httpx.AsyncClient, model: str, start: float) -> float | None:
    """Seconds from ``start`` to the model's first token (or embedding), retrying while it answers 503."""
    while time.monotonic() - start < RUN_TIMEOUT_S:
        try:
            if model in EMBEDDERS:
                r = await client.post("/v1/embeddings", json={"model": model, "input": "hello"})
                if r.status_code == 200:
                    return time.monotonic() - start
            else:
                body = {"model": model, "prompt": "The capital of France is", "max_tokens": 1, "stream": True}
                async with client.stream("POST", "/v1/completions", json=body) as r:
                    if r.status_code == 200:
                        async for line in r.aiter_lines():
                            if line.startswith("data: ") and '"text"' in line:
                                return time.monotonic() - start
                    else:
                        await r.aread()
                if r.status_code not in (200, 503):
                    return None  # a real failure: not a start-up figure
        except httpx.TransportError:
            pass  # not listening yet
        await asyncio.sleep(POLL_S)
    return None


async def _measure(
    proc: subprocess.Popen[bytes], url: str, start: float, models: tuple[str, ...]
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answers = {m: asyncio.create_task(_first_answer(client, m, start)) for m in models}
        ready_s = cpu_s = None
        body: dict[str, Any] = {}
        while time.monotonic() - start < RUN_TIMEOUT_S and proc.poll() is None:
            try:
                r = await client.get("/ready")
                if r.status_code == 200:
                    ready_s, cpu_s, body = time.monotonic() - start, _cpu_seconds(proc.pid), r.json()
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(POLL_S)
        first = {m: await t for m, t in answers.items()} if ready_s is not None else {}
        for t in answers.values():
            t.cancel()
    loads = {m["model"]: m for m in body.get("models", [])}
    return {
        "ready_s": ready_s,
        "cpu_s": cpu_s,
        "models": {
            m: {"first_token_s": first.get(m), "load_s": loads.get(m, {}).get("load_s")} for m in models
        },
    }


def run_once(phase: str, data_dir: Path, models: tuple[str, ...]) -> dict[str, Any]:
    """Start the server on ``data_dir``, measure it, stop it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "bench-startup.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir)}))
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MODELYARD_CONFIG", None)
    log = (data_dir / f"serve-{phase}.log").open("wb")
    cmd = [sys.executable, "-m", "modelyard.cli", "serve", "--config", str(config), "--port", str(port)]
    start = time.monotonic()
    proc = subprocess.Popen([*cmd, "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        result = asyncio.run(_measure(proc, f"http://127.0.0.1:{port}", start, models))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    if result["ready_s"] is None:
        tail = (data_dir / f"serve-{phase}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the {phase} start never reached /ready:\n{tail}")
    return {"phase": phase, "load_average_1m": os.getloadavg()[0], **result}


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cpu = report["cpu"]
    table = Table(
        title=f"modelyard serve start-up, {cpu['model']} ({cpu['cpus']} CPUs, {' '.join(cpu['features'])})"
    )
    table.add_column("run")
    table.add_column("/ready s", justify="right")
    table.add_column("server CPU s", justify="right")
    table.add_column("load avg", justify="right")
    for model in report["models"]:
        table.add_column(f"{model} first token s (load s)", justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for run in report["runs"]:
        cells = [
            f"{fmt(run['models'][m]['first_token_s'])} ({fmt(run['models'][m]['load_s'])})"
            for m in report["models"]
        ]
        table.add_row(
            run["phase"], fmt(run["ready_s"]), fmt(run["cpu_s"]), fmt(run["load_average_1m"]), *cells
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm-runs", type=int, default=2, help="warm starts after the cold one")
    parser.add_argument(
        "--no-cold", action="store_true", help="skip the cold run (needs --keep with a warm cache)"
    )
    parser.add_argument("--keep", type=Path, help="data dir to use and keep (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the JSON report only")
    args = parser.parse_args(argv)
    models = GENERATIVE + EMBEDDERS
    report: dict[str, Any] = {
        "version": VERSION,
        "cpu": cpu_description(),
        "models": list(models),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        data_dir = args.keep or Path(tmp) / "data"
        phases = ([] if args.no_cold else ["cold"]) + [f"warm {i + 1}" for i in range(args.warm_runs)]
        for phase in phases:
            if not args.json:
                print(f"starting modelyard serve ({phase}) ...", file=sys.stderr, flush=True)
            report["runs"].append(run_once(phase, data_dir, models))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return report


if __name__ == "__main__":
    main()
