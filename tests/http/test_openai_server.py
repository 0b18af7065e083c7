"""The OpenAI API of a real ``modelyard serve`` subprocess, driven by the official ``openai`` client.

Generative calls go to remote deployments on the mock upstream (``bench/mock_upstream.py``), which
echoes the last user message as ``echo: <words>``; embeddings use the packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING

import httpx
import numpy as np
import openai
import pytest

if TYPE_CHECKING:
    from servers import MockUpstream, RemoteServer

MSG = [{"role": "user", "content": "one two three four five"}]


def test_health_ready_and_request_id(server: RemoteServer) -> None:
    r = httpx.get(f"{server.url}/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]
    r = httpx.get(f"{server.url}/ready")
    assert r.status_code == 200 and r.json()["ready"] is True
    r = httpx.get(f"{server.url}/health", headers={"x-request-id": "my-trace-42"})
    assert r.headers["x-request-id"] == "my-trace-42"


def test_models_list_and_retrieve(server: RemoteServer) -> None:
    ids = {m.id for m in server.client.models.list()}
    assert {"remote-chat", "all-minilm-l6-v2", "flaky"} <= ids
    model = server.client.models.retrieve("remote-chat")
    assert model.id == "remote-chat" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as exc:
        server.client.models.retrieve("no-such-model")
    assert exc.value.body["code"] == "model_not_found"


def test_chat_non_stream(server: RemoteServer) -> None:
    raw = server.client.chat.completions.with_raw_response.create(
        model="remote-chat", messages=MSG, seed=7, temperature=0.5, top_p=0.9, user="u-1"
    )
    assert raw.headers["x-request-id"]
    resp = raw.parse()
    assert resp.choices[0].message.content == "echo: one two three four five"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 6
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_n_stop_max_tokens(server: RemoteServer) -> None:
    resp = server.client.chat.completions.create(model="remote-chat", messages=MSG, n=3, max_tokens=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert all(c.message.content == "echo: one two" and c.finish_reason == "length" for c in resp.choices)
    resp = server.client.chat.completions.create(model="remote-chat", messages=MSG, max_completion_tokens=2)
    assert resp.choices[0].message.content == "echo: one"
    resp = server.client.chat.completions.create(model="remote-chat", messages=MSG, stop=["three"])
    assert resp.choices[0].message.content == "echo: one two"
    assert resp.choices[0].finish_reason == "stop"


def test_chat_logprobs(server: RemoteServer) -> None:
    resp = server.client.chat.completions.create(
        model="remote-chat", messages=MSG, logprobs=True, top_logprobs=2, max_tokens=2
    )
    content = resp.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and [t.token for t in content] == ["echo:", "one"]
    assert len(content[0].top_logprobs) == 2


def test_chat_stream_with_usage(server: RemoteServer) -> None:
    chunks = list(
        server.client.chat.completions.create(
            model="remote-chat", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four five"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_chat_stream_n(server: RemoteServer) -> None:
    texts = {0: "", 1: ""}
    for chunk in server.client.chat.completions.create(model="remote-chat", messages=MSG, stream=True, n=2):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "echo: one two three four five", 1: "echo: one two three four five"}


def test_completions(server: RemoteServer) -> None:
    resp = server.client.completions.create(
        model="remote-chat", prompt="The capital of France is", max_tokens=3
    )
    assert resp.object == "text_completion"
    assert resp.choices[0].text == "echo: The capital" and resp.choices[0].finish_reason == "length"
    text = "".join(
        c.choices[0].text
        for c in server.client.completions.create(model="remote-chat", prompt="a b", stream=True)
        if c.choices
    )
    assert text == "echo: a b"


def test_embeddings_float_and_base64(server: RemoteServer) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Quarterly revenue grew by 8%."]
    default = server.client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # SDK asks base64
    as_float = server.client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
    a = np.array([d.embedding for d in default.data])
    b = np.array([d.embedding for d in as_float.data])
    assert a.shape == (3, 384)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    sims = a @ a.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert default.usage.prompt_tokens == default.usage.total_tokens > 10
    raw = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": "all-minilm-l6-v2", "input": "hi", "encoding_format": "base64"},
    ).json()
    vec = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert vec.shape == (384,)


def test_embeddings_errors(server: RemoteServer) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        server.client.embeddings.create(model="all-minilm-l6-v2", input="word " * 400)
    assert exc.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc:
        server.client.embeddings.create(model="all-minilm-l6-v2", input="x", dimensions=12)
    assert exc.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError) as exc:
        server.client.chat.completions.create(model="all-minilm-l6-v2", messages=MSG)
    assert "does not serve" in exc.value.message


def test_remote_embeddings_pass_through(server: RemoteServer) -> None:
    resp = server.client.embeddings.create(model="remote-chat", input=["a", "b"], encoding_format="float")
    assert len(resp.data) == 2 and len(resp.data[0].embedding) == 8


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 5}, "n"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"max_completion_tokens": 5000}, "max_completion_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}] * 9}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ],
)
def test_invalid_requests_are_400(server: RemoteServer, kwargs: dict, param: str) -> None:
    args = {"model": "remote-chat", "messages": MSG, **kwargs}
    with pytest.raises(openai.BadRequestError) as exc:
        server.client.chat.completions.create(**args)
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == param
    assert exc.value.body["type"] == "invalid_request_error"
    assert exc.value.response.headers["x-request-id"]


def test_unknown_fields_are_ignored(server: RemoteServer) -> None:
    resp = server.client.chat.completions.create(
        model="remote-chat", messages=MSG, extra_body={"some_future_field": {"x": 1}}
    )
    assert resp.choices[0].message.content.startswith("echo:")  # type: ignore[union-attr]


def test_raw_http_errors(server: RemoteServer) -> None:
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert r.headers["x-request-id"]
    r = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "remote-chat"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "remote-chat", "messages": MSG, "pad": "x" * 70000},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert r.headers["x-request-id"]
    r = httpx.get(f"{server.url}/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(f"{server.url}/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_unknown_model_is_404(server: RemoteServer) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        server.client.chat.completions.create(model="gpt-nonexistent", messages=MSG)
    assert exc.value.body["code"] == "model_not_found" and exc.value.body["param"] == "model"


def test_upstream_errors(server: RemoteServer, mock_upstream: MockUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        server.client.chat.completions.create(model="badreq", messages=MSG)
    assert exc.value.body["param"] == "temperature"
    with pytest.raises(openai.RateLimitError):
        server.client.chat.completions.create(model="ratelimited", messages=MSG)
    before = mock_upstream.stats()["requests"].get("fail-500", 0)
    with pytest.raises(openai.InternalServerError) as exc:
        server.client.chat.completions.create(model="broken", messages=MSG)
    assert exc.value.status_code == 502
    assert mock_upstream.stats()["requests"]["fail-500"] - before == 2  # one try + one retry
    with pytest.raises(openai.InternalServerError) as exc:
        server.client.chat.completions.create(model="unreachable", messages=MSG)
    assert exc.value.status_code == 502


def test_retry_then_success(server: RemoteServer, mock_upstream: MockUpstream) -> None:
    before = mock_upstream.stats()["requests"].get("flaky", 0)
    for stream in (False, True):
        resp = server.client.chat.completions.create(model="flaky", messages=MSG, stream=stream)
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in resp if c.choices).startswith("echo:")
        else:
            assert resp.choices[0].message.content.startswith("echo:")
    assert mock_upstream.stats()["requests"]["flaky"] - before in (3, 4)  # a 503 retried at least once


def test_fallback_to_other_model(server: RemoteServer) -> None:
    resp = server.client.chat.completions.create(model="broken-with-fallback", messages=MSG)
    assert resp.choices[0].message.content == "echo: one two three four five"
    chunks = list(
        server.client.chat.completions.create(model="broken-with-fallback", messages=MSG, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("echo:")


def test_circuit_breaker_opens(server: RemoteServer, mock_upstream: MockUpstream) -> None:
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            server.client.chat.completions.create(model="breaker", messages=MSG)
    before = mock_upstream.stats()["requests"].get("fail-500", 0)
    with pytest.raises(openai.InternalServerError) as exc:
        server.client.chat.completions.create(model="breaker", messages=MSG)
    assert exc.value.status_code == 503 and exc.value.body["code"] == "over_capacity"
    assert mock_upstream.stats()["requests"].get("fail-500", 0) == before  # not even tried
    dep = next(d for d in server.stats()["deployments"] if d["model"] == "breaker")
    assert dep["breaker"] == "open"


def test_midstream_failure_is_in_band_error(server: RemoteServer) -> None:
    stream = server.client.chat.completions.create(model="midstream", messages=MSG, stream=True)
    got = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            got.append(chunk)
    assert got, "the first chunks arrive before the failure"
    assert "mid-stream" in exc.value.message or "without [DONE]" in exc.value.message


def test_client_disconnect_frees_upstream(server: RemoteServer, mock_upstream: MockUpstream) -> None:
    body = {"model": "slow", "messages": MSG, "stream": True}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            chunks = resp.iter_raw()  # keep a reference: a collected iterator closes the response
            next(chunks)
            assert mock_upstream.stats()["in_flight"] == 1
            assert server.stats()["active_streams"] == 1
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if mock_upstream.stats()["in_flight"] == 0 and server.stats()["active_streams"] == 0:
            break
        time.sleep(0.05)
    assert mock_upstream.stats()["in_flight"] == 0
    stats = server.stats()
    assert stats["active_streams"] == 0
    assert all(d["in_flight"] == 0 for d in stats["deployments"])


def test_registry_refs_and_alias_change_without_restart(server: RemoteServer) -> None:
    emb = "all-minilm-l6-v2"
    info = httpx.get(f"{server.url}/admin/models/{emb}").json()
    assert [v["version"] for v in info["versions"]] == [1]  # registered at start-up
    for ref in (emb, f"{emb}@production", f"{emb}:1"):
        assert len(server.client.embeddings.create(model=ref, input="hi").data[0].embedding) == 384
    with pytest.raises(openai.NotFoundError):
        server.client.embeddings.create(model=f"{emb}@canary", input="hi")
    with pytest.raises(openai.NotFoundError):
        server.client.embeddings.create(model=f"{emb}:7", input="hi")
    r = httpx.put(f"{server.url}/admin/models/{emb}/aliases/canary", json={"version": 1})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 5
    while True:  # the server notices the new alias by polling the registry revision
        try:
            server.client.embeddings.create(model=f"{emb}@canary", input="hi")
            break
        except openai.NotFoundError:
            assert time.monotonic() < deadline, "alias change not picked up"
            time.sleep(0.1)
    assert server.client.models.retrieve(f"{emb}@canary").id == f"{emb}@canary"
