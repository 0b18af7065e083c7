"""Gateway + engine workers as real processes over the real Redis (``modelyard serve`` / ``modelyard worker``).

Every answer is checked against the in-process engine path (greedy decoding on the tiny model is
deterministic), so a request served twice, replayed or cut short shows up as a mismatch.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from queue_helpers import Cluster

from modelyard.gateway.backends.base import BackendRequest, Endpoint
from modelyard.gateway.backends.local import LocalBackend
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest
from modelyard.settings import LocalModelSettings, Settings

pytestmark = pytest.mark.redis

Spec = tuple[str, str, int]  # (endpoint, text, max_tokens)


def specs(n: int) -> list[Spec]:
    return [
        ("chat" if i % 2 else "completions", f"Hello {i % 7} world number {i % 5}", 4 + (i * 7) % 40)
        for i in range(n)
    ]


def body(spec: Spec) -> dict[str, Any]:
    kind, text, max_tokens = spec
    key = "messages" if kind == "chat" else "prompt"
    value: Any = [{"role": "user", "content": text}] if kind == "chat" else text
    return {"model": "tiny", key: value, "max_tokens": max_tokens, "temperature": 0}


def reference(tiny_dir: Path, tmp: Path, wanted: list[Spec]) -> dict[Spec, tuple[str, int, int]]:
    """(text, prompt_tokens, completion_tokens) of each spec on the in-process engine."""
    settings = Settings(
        data_dir=tmp,
        model_cache_dir=tmp / "models",
        local_models=[LocalModelSettings(name="tiny", source=str(tiny_dir))],
        embedders=[],
        engine={"max_model_len": 256, "num_threads": 1, "dtype": "float32"},
    )

    async def run() -> dict[Spec, tuple[str, int, int]]:
        import orjson

        backend = LocalBackend(settings.local_models[0], settings)
        await backend.start()
        out = {}
        try:
            for spec in set(wanted):
                b = body(spec)
                chat = spec[0] == "chat"
                parsed = (ChatCompletionRequest if chat else CompletionRequest).model_validate(b)
                ep = Endpoint.CHAT if chat else Endpoint.COMPLETIONS
                r = orjson.loads(await backend.complete(BackendRequest(ep, b, parsed, "ref", "tiny")))
                c = r["choices"][0]
                text = c["message"]["content"] if chat else c["text"]
                out[spec] = (text, r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"])
        finally:
            await backend.close()
        return out

    return asyncio.run(run())


def call(client: openai.OpenAI, spec: Spec, stream: bool) -> tuple[str, int, int]:
    b = body(spec)
    if spec[0] == "chat":
        if not stream:
            r = client.chat.completions.create(**b)
            assert r.usage is not None
            return r.choices[0].message.content or "", r.usage.prompt_tokens, r.usage.completion_tokens
        text, usage = "", None
        for chunk in client.chat.completions.create(**b, stream=True, stream_options={"include_usage": True}):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
        assert usage is not None
        return text, usage.prompt_tokens, usage.completion_tokens
    if not stream:
        c = client.completions.create(**b)
        assert c.usage is not None
        return c.choices[0].text, c.usage.prompt_tokens, c.usage.completion_tokens
    text, usage = "", None
    for chunk in client.completions.create(**b, stream=True, stream_options={"include_usage": True}):
        if chunk.choices:
            text += chunk.choices[0].text
        usage = chunk.usage or usage
    assert usage is not None
    return text, usage.prompt_tokens, usage.completion_tokens


@pytest.fixture(scope="module")
def cluster(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), tiny_dir, workers=2)
    yield c
    c.close()


def test_100_mixed_requests_complete_with_correct_usage(
    cluster: Cluster, tiny_dir: Path, tmp_path: Path
) -> None:
    wanted = specs(100)
    ref = reference(tiny_dir, tmp_path, wanted)
    served_before = sum(r["served"] for r in cluster.reports().values())
    client = cluster.gateway.client
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: call(client, wanted[i], stream=i % 3 != 0), range(100)))
    for spec, answer in zip(wanted, got, strict=True):
        assert answer == ref[spec], spec
    time.sleep(1.0)  # one heartbeat
    reports = cluster.reports()
    served = {wid: r["served"] for wid, r in reports.items()}
    assert sum(served.values()) - served_before == 100, served  # each request served exactly once
    assert all(v > 0 for v in served.values()) and len(served) == 2, served  # both workers pulled work
    waits = 0
    for wid in ("w0", "w1"):  # each worker's /metrics counts the queue wait of every request it took
        assert httpx.get(f"{cluster.worker_url(wid)}/ready").status_code == 200
        metrics = httpx.get(f"{cluster.worker_url(wid)}/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith("vllm:request_queue_time_seconds_count"))
        waits += int(float(line.split()[-1]))
    assert waits == sum(r["served"] for r in reports.values())


def test_sigkill_mid_stream_completes_or_errors_in_band(
    cluster: Cluster, tiny_dir: Path, tmp_path: Path
) -> None:
    wanted = [("completions", f"Stream {i} of the kill test", 200) for i in range(24)]
    ref = reference(tiny_dir, tmp_path, wanted)
    client = openai.OpenAI(base_url=f"{cluster.gateway.url}/v1", api_key="k", max_retries=0, timeout=60)
    started = threading.Barrier(len(wanted) + 1, timeout=60)
    outcomes: list[tuple[str, Any]] = [("pending", None)] * len(wanted)

    def run(i: int) -> None:
        text, usage = "", None
        try:
            stream = client.completions.create(
                **body(wanted[i]), stream=True, stream_options={"include_usage": True}
            )
            first = True
            for chunk in stream:
                if first:
                    started.wait()
                    first = False
                if chunk.choices:
                    text += chunk.choices[0].text
                usage = chunk.usage or usage
            outcomes[i] = (
                "complete",
                (text, usage.prompt_tokens, usage.completion_tokens) if usage else None,
            )
        except openai.APIError as exc:
            outcomes[i] = ("error", (text, str(exc)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(wanted))]
    for t in threads:
        t.start()
    started.wait()  # every stream has its first chunk: both workers are mid-stream
    victim = "w0"
    os.kill(cluster.workers[victim].pid, signal.SIGKILL)
    cluster.workers[victim].wait()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "a stream hangs"
    errors = [o for o in outcomes if o[0] == "error"]
    for spec, (kind, value) in zip(wanted, outcomes, strict=True):
        assert kind in ("complete", "error")
        if kind == "complete":
            assert value == ref[spec]  # neither replayed nor cut: exactly the reference text and usage
        else:
            partial, message = value
            assert ref[spec][0].startswith(partial), "partial output was replayed"
            assert "not replayed" in message, message
    assert errors, "the kill hit no stream in flight; nothing was tested"
    # the survivor still serves, and the dead worker's report expires
    assert call(cluster.gateway.client, ("chat", "after the kill", 8), stream=True)[2] > 0
    time.sleep(2)
    assert set(cluster.reports()) == {"w1"}
    cluster.start_worker(victim)
    cluster.wait_ready(victim)


def test_sigterm_drains_in_flight_requests(cluster: Cluster, tiny_dir: Path, tmp_path: Path) -> None:
    wanted = [("completions", "A quick" + " fox" * i, 200) for i in range(8)]
    ref = reference(tiny_dir, tmp_path, wanted)
    client = openai.OpenAI(base_url=f"{cluster.gateway.url}/v1", api_key="k", max_retries=0, timeout=60)
    with ThreadPoolExecutor(len(wanted)) as pool:
        futures = [pool.submit(call, client, spec, True) for spec in wanted]
        deadline = time.monotonic() + 30
        while sum(r["in_flight"] for r in cluster.reports().values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for wid in ("w0", "w1"):
            cluster.workers[wid].send_signal(signal.SIGTERM)
        answers = [f.result(timeout=60) for f in futures]
    for spec, answer in zip(wanted, answers, strict=True):
        assert answer == ref[spec]
    drained = 0
    for wid in ("w0", "w1"):
        assert cluster.workers[wid].wait(timeout=30) == 0
        found = re.findall(rf"worker {wid} draining \((\d+) in flight\)", cluster.log(wid))
        drained += int(found[-1])
    assert drained > 0, "SIGTERM arrived after every request had finished; nothing was drained"
    for wid in ("w0", "w1"):
        cluster.start_worker(wid)
        cluster.wait_ready(wid)
