"""Test support: a mock OpenAI upstream and a real ``modelyard serve`` subprocess (RemoteOpenAIServer style).

The default server serves only remote deployments on the mock upstream plus the packaged
all-MiniLM-L6-v2 embedder, so the fast tests need no generative model. Fault-injection models
(see ``bench/mock_upstream.py``) are wired in as deployments of their own.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

ROOT = Path(__file__).resolve().parents[1]
MOCK_UPSTREAM = ROOT / "bench" / "mock_upstream.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text()[-4000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered\n{detail}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    detail = log.read_text()[-4000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s}s\n{detail}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class MockUpstream:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-P", str(MOCK_UPSTREAM), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_http(f"{self.url}/stats", self.proc, 30)

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/stats").json()


class RemoteServer:
    """``modelyard serve`` in a subprocess on a free port with its own data dir and config."""

    def __init__(
        self, tmp: Path, config: dict[str, Any], *, ready_timeout_s: float = 180, wait_for: str = "/ready"
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"data_dir": str(tmp / "data"), **config}
        self.config_path = tmp / "modelyard.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log = tmp / "serve.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("MODELYARD_CONFIG", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard.cli",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
        _wait_http(f"{self.url}{wait_for}", self.proc, ready_timeout_s, self.log)
        self.client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="test-key", max_retries=0, timeout=30)

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/stats").json()

    def close(self) -> None:
        self.client.close()
        stop_process(self.proc)


def remote_config(upstream: str, **extra: Any) -> dict[str, Any]:
    """Deployments on the mock upstream, one per fault mode, plus the embedder."""

    def dep(model: str, upstream_model: str, **kw: Any) -> dict[str, Any]:
        return {
            "model": model,
            "base_url": f"{upstream}/v1",
            "upstream_model": upstream_model,
            "timeout_s": 10,
            "retry_backoff_s": 0.01,
            **kw,
        }

    closed = free_port()
    return {
        "local_models": [],
        "embedders": [{"name": "all-minilm-l6-v2"}],
        "deployments": [
            dep("remote-chat", "mock"),
            dep("remote-chat", "mock", name="remote-chat-b"),
            dep("flaky", "flaky", max_retries=2),
            dep("broken", "fail-500", max_retries=1),
            dep("eval-broken", "fail-500", max_retries=1),  # the eval tests' own: its circuit opens there
            dep("broken-with-fallback", "fail-500", max_retries=0),
            dep("breaker", "fail-500", max_retries=0),
            dep("ratelimited", "fail-429", max_retries=0),
            dep("badreq", "bad-request"),
            dep("slow", "slow"),
            dep("midstream", "midstream", max_retries=0),
            {
                "model": "unreachable",
                "base_url": f"http://127.0.0.1:{closed}/v1",
                "max_retries": 1,
                "retry_backoff_s": 0.01,
                "timeout_s": 2,
            },
        ],
        "fallbacks": {"broken-with-fallback": ["remote-chat"]},
        "circuit_breaker": {"failure_threshold": 3, "reset_after_s": 60},
        "router": {"policy": "least_loaded"},
        "registry_poll_s": 0.2,
        "limits": {"max_n": 4, "max_tokens": 1000, "max_messages": 8, "max_body_bytes": 65536},
        **extra,
    }


async def finish_tasks(tasks: list[asyncio.Task[Any]], timeout_s: float, what: str) -> None:
    """Await ``tasks`` (e.g. draining workers); past ``timeout_s`` fail with the stack of every task still
    pending in the loop, so a hang on a loaded CI machine says where it was."""
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in done:
        task.result()
    if pending:
        out = io.StringIO()
        for task in asyncio.all_tasks():
            if not task.done() and task is not asyncio.current_task():
                task.print_stack(file=out)
        for task in pending:
            task.cancel()
        raise AssertionError(f"{what} did not finish within {timeout_s}s; pending tasks:\n{out.getvalue()}")
