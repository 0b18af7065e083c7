"""Graceful shutdown: SIGTERM lets an in-flight stream finish before the server exits."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from servers import MockUpstream, RemoteServer


def test_sigterm_drains_in_flight_stream(mock_upstream: MockUpstream, tmp_path: Path) -> None:
    config = {
        "local_models": [],
        "embedders": [],
        "deployments": [{"model": "slow", "base_url": f"{mock_upstream.url}/v1", "upstream_model": "slow"}],
        "drain_timeout_s": 20,
    }
    server = RemoteServer(tmp_path, config)
    try:
        body = {
            "model": "slow",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "max_tokens": 20,
        }
        with httpx.Client(timeout=20) as client:
            with client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as resp:
                chunks = resp.iter_raw()
                received = next(chunks)
                server.proc.send_signal(signal.SIGTERM)
                for chunk in chunks:
                    received += chunk
        assert received.endswith(b"data: [DONE]\n\n")
        assert received.count(b'"content":"') >= 20
        assert server.proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal on exit
    finally:
        server.close()
