"""The README quick start on the packaged SmolLM2 through ``modelyard serve`` and the official client,
and the local engine's response shapes (logprobs included) against OpenAI's schemas.

Slow: the server loads the real model (converted weights are cached in ~/.cache/modelyard/models).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openai_schema import as_final_chunk, validate
from servers import RemoteServer

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    config = {  # the embedded defaults for SmolLM2: its shipped sampling defaults included
        "local_models": [{"name": SMOL, "source": f"packaged:{SMOL}"}],
        "embedders": [],
        "model_cache_dir": str(Path.home() / ".cache" / "modelyard" / "models"),
        "registry_poll_s": 0.2,
    }
    srv = RemoteServer(tmp_path_factory.mktemp("quickstart"), config, ready_timeout_s=600)
    yield srv
    srv.close()


def test_the_quick_start_answers_paris_briefly(smol: RemoteServer) -> None:
    """The README's request, as sent there: no temperature, no max_tokens."""
    for _ in range(3):  # every answer (the second and third hit the prefix cache), not one lucky one
        resp = smol.client.chat.completions.create(model=SMOL, messages=QUESTION)  # type: ignore[arg-type]
        answer = resp.choices[0].message.content or ""
        print(f"\nquick start -> {answer!r}")
        assert "Paris" in answer
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None and resp.usage.completion_tokens <= 40, answer
    assert smol.client.models.retrieve(SMOL).model_dump()["sampling_defaults"] == {
        "temperature": 0.0,
        "top_p": 0.9,
    }


def test_a_model_version_max_tokens_overrides_the_chat_default(smol: RemoteServer) -> None:
    url = f"{smol.url}/admin/models/{SMOL}/versions/1/defaults"
    assert httpx.put(url, json={"max_tokens": 3, "temperature": 0}).status_code == 200
    try:
        resp = smol.client.chat.completions.create(model=SMOL, messages=QUESTION)  # type: ignore[arg-type]
        assert resp.usage is not None and resp.usage.completion_tokens == 3
        assert resp.choices[0].finish_reason == "length"
        resp = smol.client.chat.completions.create(model=SMOL, messages=QUESTION, max_tokens=5)  # type: ignore[arg-type]
        assert resp.usage is not None and resp.usage.completion_tokens == 5  # the request's own wins
    finally:
        assert httpx.delete(url).status_code == 200


def _stream(srv: RemoteServer, path: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", f"{srv.url}/v1/{path}", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        lines = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_local_engine_responses_match_the_schema(smol: RemoteServer) -> None:
    chat = {"model": SMOL, "messages": QUESTION, "max_tokens": 6, "logprobs": True, "top_logprobs": 2, "n": 2}
    r = httpx.post(f"{smol.url}/v1/chat/completions", json=chat, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    validate("CreateChatCompletionResponse", body)
    assert (
        body["choices"][0]["logprobs"]["refusal"] is None
        and len(body["choices"][0]["logprobs"]["content"]) == 6
    )
    chunks = _stream(smol, "chat/completions", {**chat, "stream_options": {"include_usage": True}})
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    assert any(c["choices"] and c["choices"][0].get("logprobs") for c in chunks)
    plain = {"model": SMOL, "messages": QUESTION, "max_tokens": 4}
    validate(
        "CreateChatCompletionResponse",
        httpx.post(f"{smol.url}/v1/chat/completions", json=plain, timeout=60).json(),
    )

    completion = {"model": SMOL, "prompt": "The capital of France is", "max_tokens": 4, "logprobs": 2}
    r = httpx.post(f"{smol.url}/v1/completions", json=completion, timeout=60)
    assert r.status_code == 200, r.text
    validate("CreateCompletionResponse", r.json())
    for chunk in _stream(smol, "completions", completion):
        validate("CreateCompletionResponse", as_final_chunk(chunk))
    validate("ListModelsResponse", httpx.get(f"{smol.url}/v1/models").json())
    too_long = {"model": SMOL, "messages": [{"role": "user", "content": "word " * 9000}]}
    r = httpx.post(f"{smol.url}/v1/chat/completions", json=too_long, timeout=60)
    assert r.status_code == 400
    validate("ErrorResponse", r.json())
