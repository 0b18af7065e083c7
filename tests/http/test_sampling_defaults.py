"""Whose parameter wins, through a real ``modelyard serve`` and the official client (tested once).

A remote deployment on the mock upstream (which honours ``max_tokens`` and ``stop`` and echoes the
message) is registered in the registry and given model-version defaults over the admin API:
the request's own value beats the model version's default, which beats the engine's (here the
upstream's: no limit, the whole echo). The local engine's defaults are covered by the slow
``test_quickstart.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from servers import MockUpstream, RemoteServer, remote_config

MSG: Any = [{"role": "user", "content": "one two three four five"}]
FULL = "echo: one two three four five"


@pytest.fixture(scope="module")
def srv(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    server = RemoteServer(tmp_path_factory.mktemp("defaults"), remote_config(mock_upstream.url, embedders=[]))
    admin = f"{server.url}/admin/models"
    assert httpx.post(admin, json={"name": "remote-chat"}).status_code == 201
    version = {
        "artifact_uri": "openai_compat://remote-chat",
        "architecture": "remote",
        "context_length": 4096,
    }
    assert httpx.post(f"{admin}/remote-chat/versions", json=version).status_code == 201
    yield server
    server.close()


def _say(server: RemoteServer, model: str = "remote-chat", **kw: Any) -> str:
    resp = server.client.chat.completions.create(model=model, messages=MSG, **kw)
    return resp.choices[0].message.content or ""


def test_request_beats_model_default_beats_engine_default(srv: RemoteServer) -> None:
    url = f"{srv.url}/admin/models/remote-chat/versions/1/defaults"
    assert _say(srv) == FULL  # no defaults anywhere: the engine's (the upstream's) apply

    r = httpx.put(url, json={"max_tokens": 3, "stop": ["four"], "temperature": 0.2})
    assert r.status_code == 200, r.text
    assert r.json()["defaults"] == {"max_tokens": 3, "stop": ["four"], "temperature": 0.2}
    # the admin call refreshed this server's cache: the very next request sees the defaults
    assert _say(srv) == "echo: one two"  # the model version's max_tokens
    assert _say(srv, "remote-chat:1") == "echo: one two"
    assert _say(srv, max_tokens=5) == "echo: one two three"  # the request's max_tokens, the default stop
    assert _say(srv, max_completion_tokens=2) == "echo: one"
    assert _say(srv, max_tokens=6, stop=["five"]) == "echo: one two three four"  # the request's own
    stream = srv.client.chat.completions.create(model="remote-chat", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: one two"
    completion = srv.client.completions.create(model="remote-chat", prompt="a b c d")
    assert completion.choices[0].text == "echo: a b"

    shown = srv.client.models.retrieve("remote-chat").model_dump()
    assert shown["sampling_defaults"] == {"temperature": 0.2, "max_tokens": 3, "stop": ["four"]}

    assert httpx.delete(url).status_code == 200
    assert _say(srv) == FULL
    assert srv.client.models.retrieve("remote-chat").model_dump()["sampling_defaults"] == {}


def test_a_change_written_elsewhere_is_picked_up_by_polling(srv: RemoteServer) -> None:
    from modelyard.registry import Registry

    registry = Registry(f"sqlite:///{srv.config_path.parent / 'data' / 'modelyard.db'}")
    try:
        registry.set_defaults("remote-chat", 1, {"max_tokens": 2})
        deadline = time.monotonic() + 10
        while _say(srv) != "echo: one":
            assert time.monotonic() < deadline, "the defaults change was not picked up"
            time.sleep(0.1)
    finally:
        registry.clear_defaults("remote-chat", 1)
        registry.close()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 3}, "defaults.temperature"),
        ({"top_p": 0}, "defaults.top_p"),
        ({"max_tokens": 0}, "defaults.max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "defaults.stop"),
        ({"temprature": 0.2}, None),  # a misspelt field is refused, not ignored
    ],
)
def test_bad_defaults_are_openai_shaped_400s(
    srv: RemoteServer, body: dict[str, Any], param: str | None
) -> None:
    r = httpx.put(f"{srv.url}/admin/models/remote-chat/versions/1/defaults", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert httpx.get(f"{srv.url}/admin/models/remote-chat").json()["versions"][0]["defaults"] == {}


def test_defaults_of_an_unknown_version_are_404(srv: RemoteServer) -> None:
    r = httpx.put(f"{srv.url}/admin/models/remote-chat/versions/9/defaults", json={"temperature": 0})
    assert r.status_code == 404, r.text
    with pytest.raises(openai.NotFoundError):
        srv.client.models.retrieve("remote-chat:9")
