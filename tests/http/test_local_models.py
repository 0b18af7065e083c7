"""The packaged SmolLM2-135M-Instruct and Gemma 3 270M served by ``modelyard serve`` on the built-in engine.

Slow: the server loads both real models (converted weights are cached in ~/.cache/modelyard/models).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from servers import RemoteServer

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
GEMMA = "gemma-3-270m"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    config = {
        "embedders": [],
        "model_cache_dir": str(Path.home() / ".cache" / "modelyard" / "models"),
        "engine": {"max_model_len": 2048},
    }
    srv = RemoteServer(tmp_path_factory.mktemp("local"), config, ready_timeout_s=600)
    yield srv
    srv.close()


def ask(server: RemoteServer, content: str, **kw: object) -> str:
    resp = server.client.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": content}], temperature=0, max_tokens=48, **kw
    )
    text = resp.choices[0].message.content or ""
    print(f"\nSmolLM2 <- {content!r}\n        -> {text!r}")
    return text


def test_smollm2_answers_sensibly(local_server: RemoteServer) -> None:
    assert "Paris" in ask(local_server, "What is the capital of France?")
    assert any(
        c in ask(local_server, "Name three primary colors.").lower() for c in ("red", "blue", "yellow")
    )
    assert "4" in ask(local_server, "What is 2 + 2?")


def test_completion_capital_of_france(local_server: RemoteServer) -> None:
    resp = local_server.client.completions.create(
        model=SMOL, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    print(f"\nSmolLM2 completion -> {resp.choices[0].text!r}")
    assert "Paris" in resp.choices[0].text
    assert resp.usage is not None and resp.usage.completion_tokens == 8


def test_stream_equals_non_stream_and_usage_is_exact(local_server: RemoteServer) -> None:
    msgs = [{"role": "user", "content": "Write one sentence about the sea."}]
    full = local_server.client.chat.completions.create(
        model=SMOL, messages=msgs, temperature=0, max_tokens=24
    )
    chunks = list(
        local_server.client.chat.completions.create(
            model=SMOL,
            messages=msgs,
            temperature=0,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == full.choices[0].message.content
    )
    usage = chunks[-1].usage
    assert usage is not None and full.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        full.usage.prompt_tokens,
        full.usage.completion_tokens,
    )
    assert (
        usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens > 0
    )  # prefix cache


def test_sampling_parameters(local_server: RemoteServer) -> None:
    msgs = [{"role": "user", "content": "Tell me a short story."}]
    a = local_server.client.chat.completions.create(
        model=SMOL, messages=msgs, n=2, seed=11, temperature=1.0, top_p=0.9, max_tokens=12, user="tenant-a"
    )
    b = local_server.client.chat.completions.create(
        model=SMOL, messages=msgs, n=2, seed=11, temperature=1.0, top_p=0.9, max_tokens=12, user="tenant-a"
    )
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len(a.choices) == 2 and all(c.finish_reason == "length" for c in a.choices)
    assert a.usage is not None and a.usage.completion_tokens == 24
    lp = local_server.client.chat.completions.create(
        model=SMOL, messages=msgs, max_completion_tokens=4, temperature=0, logprobs=True, top_logprobs=2
    )
    content = lp.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) >= 4 and all(len(t.top_logprobs) == 2 for t in content)
    assert all(t.logprob <= 0 for t in content)
    stop = local_server.client.completions.create(
        model=SMOL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[" 7"]
    )
    assert " 7" not in stop.choices[0].text and stop.choices[0].finish_reason == "stop"


def test_context_window(local_server: RemoteServer) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        local_server.client.chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": "hi " * 3000}]
        )
    assert exc.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc:
        local_server.client.completions.create(model=SMOL, prompt="hi", max_tokens=2048)
    assert exc.value.body["code"] == "context_length_exceeded"


def test_gemma_base_model(local_server: RemoteServer) -> None:
    prompt = (
        "Country: France\nCapital: Paris\n\nCountry: Germany\nCapital: Berlin\n\nCountry: Italy\nCapital:"
    )
    resp = local_server.client.completions.create(model=GEMMA, prompt=prompt, max_tokens=4, temperature=0)
    print(f"\nGemma few-shot -> {resp.choices[0].text!r}")
    assert "Rome" in resp.choices[0].text
    chat = local_server.client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
    )
    print(f"Gemma chat -> {chat.choices[0].message.content!r}")
    assert chat.choices[0].message.content
    info = httpx.get(f"{local_server.url}/admin/models/{GEMMA}").json()
    assert info["is_base_model"] is True
    assert httpx.get(f"{local_server.url}/admin/models/{SMOL}").json()["is_base_model"] is False


def test_disconnect_aborts_engine_request(local_server: RemoteServer) -> None:
    body = {
        "model": SMOL,
        "messages": [{"role": "user", "content": "Count from 1 to 500."}],
        "stream": True,
        "max_tokens": 400,
        "temperature": 0,
    }
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{local_server.url}/v1/chat/completions", json=body) as resp:
            chunks = resp.iter_raw()
            next(chunks)
            engine = next(d for d in local_server.stats()["deployments"] if d["model"] == SMOL)["backend"]
            assert engine["num_running"] + engine["num_waiting"] == 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        engine = next(d for d in local_server.stats()["deployments"] if d["model"] == SMOL)["backend"]
        if engine["num_running"] + engine["num_waiting"] == 0:
            break
        time.sleep(0.05)
    assert engine["num_running"] + engine["num_waiting"] == 0
    assert engine["generation_tokens_total"] < 1000  # stopped long before 400 more tokens
