"""Every response shape of the OpenAI API, streamed and not, validated against OpenAI's own schemas.

The bodies come from a real ``modelyard serve`` over loopback (raw HTTP, so that nothing the client
library tolerates hides a missing field): remote deployments on the mock upstream for chat and
completions, the packaged embedder for embeddings. The local engine's shapes are checked by the slow
``test_quickstart.py``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from openai_schema import REFERENCE, SUBSET, as_final_chunk, as_float_embeddings, extract, validate

if TYPE_CHECKING:
    from servers import RemoteServer

MSG = [{"role": "user", "content": "one two three"}]


def _post(server: RemoteServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/{path}", json=body, timeout=30)


def _events(server: RemoteServer, path: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", f"{server.url}/v1/{path}", json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200, r.read()
        lines = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize(
    "extra",
    [{}, {"n": 2, "max_tokens": 2}, {"logprobs": True, "top_logprobs": 2}, {"stop": ["two"], "seed": 1}],
    ids=["plain", "n", "logprobs", "stop"],
)
def test_chat_responses_match_the_schema(server: RemoteServer, extra: dict[str, Any]) -> None:
    body = {"model": "remote-chat", "messages": MSG, **extra}
    r = _post(server, "chat/completions", body)
    assert r.status_code == 200, r.text
    validate("CreateChatCompletionResponse", r.json())
    chunks = _events(server, "chat/completions", {**body, "stream_options": {"include_usage": True}})
    assert chunks and chunks[-1]["usage"] is not None
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)


@pytest.mark.parametrize("extra", [{}, {"logprobs": 2, "max_tokens": 3}, {"echo": False, "n": 2}])
def test_completion_responses_match_the_schema(server: RemoteServer, extra: dict[str, Any]) -> None:
    body = {"model": "remote-chat", "prompt": "The capital of France is", **extra}
    r = _post(server, "completions", body)
    assert r.status_code == 200, r.text
    validate("CreateCompletionResponse", r.json())
    for chunk in _events(server, "completions", body):
        validate("CreateCompletionResponse", as_final_chunk(chunk))


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embedding_responses_match_the_schema(server: RemoteServer, encoding: str) -> None:
    body = {"model": "all-minilm-l6-v2", "input": ["a", "b"], "encoding_format": encoding}
    r = _post(server, "embeddings", body)
    assert r.status_code == 200, r.text
    validate("CreateEmbeddingResponse", as_float_embeddings(r.json()))


def test_model_list_and_retrieve_match_the_schema(server: RemoteServer) -> None:
    listed = httpx.get(f"{server.url}/v1/models").json()
    validate("ListModelsResponse", listed)
    assert all("sampling_defaults" in m for m in listed["data"])  # our extension field
    validate("Model", httpx.get(f"{server.url}/v1/models/remote-chat").json())


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "chat/completions", {"model": "no-such-model", "messages": MSG}, 404),
        ("POST", "chat/completions", {"model": "remote-chat", "messages": []}, 400),
        ("POST", "chat/completions", {"model": "remote-chat", "messages": MSG, "temperature": 9}, 400),
        ("POST", "completions", {"model": "broken", "prompt": "x"}, 502),
        ("GET", "models/no-such-model", None, 404),
    ],
)
def test_errors_match_the_schema(
    server: RemoteServer, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    r = httpx.request(method, f"{server.url}/v1/{path}", json=body, timeout=30)
    assert r.status_code == status, r.text
    validate("ErrorResponse", r.json())


def test_the_validator_refuses_what_openai_refuses() -> None:
    """The check can fail: a chat logprobs object without ``refusal`` (what modelyard sent before)."""
    good = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
                "finish_reason": "stop",
                "logprobs": {"content": [], "refusal": None},
            }
        ],
    }
    validate("CreateChatCompletionResponse", good)
    del good["choices"][0]["logprobs"]["refusal"]  # type: ignore[index]
    with pytest.raises(AssertionError, match="logprobs"):
        validate("CreateChatCompletionResponse", good)


@pytest.mark.skipif(not REFERENCE.exists(), reason="the full OpenAPI description is not on this machine")
def test_vendored_schemas_equal_the_reference() -> None:
    doc = yaml.load(REFERENCE.read_text(), Loader=yaml.CSafeLoader)
    assert json.loads(SUBSET.read_text()) == extract(doc["components"]["schemas"])
