"""Prompts in requests, through two real ``modelyard serve`` processes sharing one PostgreSQL database
(tenancy on), a mock upstream that records what it received, and the official ``openai`` client.

Covers: a prompt by label renders (template messages first, then the request's own), fills its
defaults, and is reported in the response header, the body's ``prompt`` field (and the first stream
chunk) and the request log; whose parameter wins (request > prompt > model version, tested once); a
label moved through one process changes the next request on the other without a restart; tenant
visibility; protected labels; bad input naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from servers import MockUpstream, RemoteServer, remote_config
from tenancy_support import bootstrap_admin, fresh_database_url, tenancy_config

pytestmark = pytest.mark.postgres

UPSTREAM = "record-prompts"  # the mock upstream model id of these tests' deployment
QA: dict[str, Any] = {
    "name": "capital-qa",
    "messages": [
        {"role": "system", "content": "Answer with the city only."},
        {"role": "user", "content": "What is the capital of {{ country }}?"},
    ],
    "variables": [{"name": "country", "type": "string"}],
    "model": "prompted-chat",
    "parameters": {"temperature": 0.3, "max_tokens": 5},
    "response_format": {"type": "text"},
}


class World:
    def __init__(self, a: RemoteServer, b: RemoteServer, upstream: MockUpstream, admin: str) -> None:
        self.a, self.b, self.upstream, self.admin = a, b, upstream, admin
        self.keys: dict[str, str] = {}

    def call(
        self, method: str, path: str, key: str | None = None, srv: RemoteServer | None = None, **kw: Any
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.admin}"}
        return httpx.request(method, (srv or self.a).url + path, headers=headers, timeout=15, **kw)

    def client(self, key: str | None = None, srv: RemoteServer | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{(srv or self.a).url}/v1", api_key=key or self.admin, max_retries=0, timeout=15
        )

    def received(self) -> dict[str, Any]:
        return world_received(self.upstream)


@pytest.fixture(scope="module")
def world(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("prompts-server")
    urls = fresh_database_url("postgres", tmp)
    db = next(urls)
    admin = bootstrap_admin(db)
    servers: list[RemoteServer] = []
    try:
        for name in ("a", "b"):
            config = tenancy_config(mock_upstream.url, db)
            config["embedders"] = []
            config["registry_poll_s"] = 0.2
            config["deployments"].append(
                {"model": "prompted-chat", "base_url": f"{mock_upstream.url}/v1", "upstream_model": UPSTREAM}
            )
            (tmp / name).mkdir()
            servers.append(RemoteServer(tmp / name, config))
        w = World(servers[0], servers[1], mock_upstream, admin)
        for tenant in ("acme", "globex"):
            r = w.call("POST", "/admin/tenants", json={"id": tenant, "models": ["*"]})
            assert r.status_code == 201, r.text
            for scope in ("inference", "admin"):
                r = w.call("POST", "/admin/keys", json={"tenant": tenant, "scopes": [scope]})
                assert r.status_code == 201, r.text
                w.keys[f"{tenant}-{scope}"] = r.json()["key"]
        r = w.call("POST", "/admin/prompts", json={**QA, "commit_message": "first", "labels": ["production"]})
        assert r.status_code == 201, r.text
        yield w
    finally:
        for srv in servers:
            srv.close()
        next(urls, None)


def ask(w: World, srv: RemoteServer | None = None, key: str | None = None, **prompt: Any) -> Any:
    ref = {"id": "capital-qa", "variables": {"country": "France"}, **prompt}
    return w.client(key, srv).chat.completions.with_raw_response.create(
        model=openai.NOT_GIVEN,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Be brief."}],
        extra_body={"prompt": ref},
    )


def test_prompt_by_label_renders_fills_defaults_and_is_reported(world: World) -> None:
    raw = ask(world)
    resp = raw.parse()
    assert raw.headers["x-modelyard-prompt-version"] == "capital-qa:1"
    assert resp.model_extra["prompt"] == {"id": "capital-qa", "version": "1"}
    sent = world.received()
    assert sent["messages"] == [
        {"role": "system", "content": "Answer with the city only."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "user", "content": "Be brief."},
    ]
    assert (sent["temperature"], sent["max_tokens"], sent["response_format"]) == (0.3, 5, {"type": "text"})
    assert "prompt" not in sent
    rid = raw.headers["x-request-id"]
    deadline = time.monotonic() + 20
    while True:
        rows = world.call("GET", f"/monitoring/logs?request_id={rid}").json()["data"]
        if rows:
            break
        assert time.monotonic() < deadline, "the request never reached the request log"
        time.sleep(0.2)
    assert rows[0]["prompt_version"] == "capital-qa:1" and rows[0]["model_requested"] == "prompted-chat"
    assert "What is the capital of France?" in str(rows[0]["prompt"])
    metrics = world.call("GET", "/metrics").text
    assert (
        'modelyard_prompt_requests_total{model="prompted-chat",prompt_version="capital-qa:1",status="200"}'
        in metrics
    )


def test_stream_reports_the_version_in_the_header_and_first_chunk(world: World) -> None:
    body = {
        "stream": True,
        "prompt": {"id": "capital-qa", "version": "production", "variables": {"country": "Peru"}},
    }
    with httpx.stream(
        "POST",
        world.a.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {world.admin}"},
    ) as r:
        assert r.status_code == 200 and r.headers["x-modelyard-prompt-version"] == "capital-qa:1"
    chunks = list(
        world.client().chat.completions.create(
            model="prompted-chat",
            messages=[],
            stream=True,
            extra_body={"prompt": body["prompt"]},  # type: ignore[arg-type]
        )
    )
    assert chunks[0].model_extra["prompt"] == {"id": "capital-qa", "version": "1"}
    assert all("prompt" not in (c.model_extra or {}) for c in chunks[1:])
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: What is the capital"
    )


def test_whose_parameter_wins_request_then_prompt_then_model_version(world: World) -> None:
    models = "/admin/models"
    assert world.call("POST", models, json={"name": "prompted-chat"}).status_code == 201
    version = {
        "artifact_uri": "openai_compat://prompted-chat",
        "architecture": "remote",
        "context_length": 4096,
    }
    assert world.call("POST", f"{models}/prompted-chat/versions", json=version).status_code == 201
    r = world.call(
        "PUT",
        f"{models}/prompted-chat/versions/1/defaults",
        json={"temperature": 0.1, "top_p": 0.5, "max_tokens": 7},
    )
    assert r.status_code == 200, r.text
    try:
        world.client().chat.completions.create(
            model=openai.NOT_GIVEN,  # type: ignore[arg-type]
            messages=[],
            max_tokens=4,
            extra_body={"prompt": {"id": "capital-qa", "variables": {"country": "Chile"}}},
        )
        sent = world.received()
        assert sent["max_tokens"] == 4  # the request's own
        assert sent["temperature"] == 0.3  # the prompt version's, over the model version's 0.1
        assert sent["top_p"] == 0.5  # only the model version sets it
    finally:
        world.call("DELETE", f"{models}/prompted-chat/versions/1/defaults")


def test_moving_a_label_reaches_the_other_process_without_a_restart(world: World) -> None:
    v2 = {**QA, "messages": [{"role": "user", "content": "Capital of {{ country }}, one word."}]}
    r = world.call("POST", "/admin/prompts", json={**v2, "commit_message": "terser"})
    assert r.status_code == 201 and r.json()["version"] == 2, r.text
    # process b sees the new version within its registry poll (0.2 s here), not necessarily at once
    assert seen_by_b(world, "capital-qa:2", version="latest")
    assert ask(world, world.b).headers["x-modelyard-prompt-version"] == "capital-qa:1"  # production still v1
    r = world.call("PUT", "/admin/prompts/capital-qa/labels/production", json={"version": 2})
    assert r.status_code == 200 and r.json()["labels"]["production"] == 2, r.text
    assert ask(world).headers["x-modelyard-prompt-version"] == "capital-qa:2"  # the writer: at once
    assert seen_by_b(world, "capital-qa:2"), "process b never saw the label move"
    assert world.received()["messages"][0]["content"] == "Capital of France, one word."
    r = world.call("PUT", "/admin/prompts/capital-qa/labels/production", json={"version": 1})
    assert r.status_code == 200
    r = world.call("POST", "/admin/prompts", json={**v2, "commit_message": "again"})  # unchanged push
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["created"] is False


def seen_by_b(world: World, expected: str, within_s: float = 10.0, **prompt: Any) -> bool:
    """Whether process b resolves the prompt reference to ``expected`` within ``within_s``."""
    deadline = time.monotonic() + within_s
    while ask(world, world.b, **prompt).headers["x-modelyard-prompt-version"] != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_tenant_prompts_are_invisible_to_other_tenants(world: World) -> None:
    own = {
        "name": "acme-greeting",
        "text": "Hello {{ who }} from acme",
        "variables": ["who"],
        "model": "prompted-chat",
    }
    r = world.call("POST", "/admin/prompts", world.keys["acme-admin"], json=own)
    assert r.status_code == 201 and r.json()["tenant"] == "acme", r.text
    ref = {"id": "acme-greeting", "variables": {"who": "Ann"}}
    out = world.client(world.keys["acme-inference"]).completions.create(
        model=openai.NOT_GIVEN,
        prompt="",
        extra_body={"prompt": ref},  # type: ignore[arg-type]
    )
    assert out.choices[0].text == "echo: Hello Ann from acme" and out.model_extra["prompt"]["version"] == "1"
    with pytest.raises(openai.NotFoundError) as exc:
        world.client(world.keys["globex-inference"]).completions.create(
            model="prompted-chat", prompt="", extra_body={"prompt": ref}
        )
    assert exc.value.body["param"] == "prompt.id"  # type: ignore[index]
    assert world.call("GET", "/admin/prompts/acme-greeting", world.keys["globex-admin"]).status_code == 404
    listed = world.call("GET", "/admin/prompts", world.keys["globex-admin"]).json()["data"]
    assert [p["name"] for p in listed] == ["capital-qa"]  # the global one only
    assert "acme" not in str(listed)
    assert (
        ask(world, key=world.keys["globex-inference"])
        .headers["x-modelyard-prompt-version"]
        .startswith("capital-qa:")
    )
    # A tenant may not change a global prompt.
    r = world.call(
        "PUT", "/admin/prompts/capital-qa/labels/staging", world.keys["acme-admin"], json={"version": 1}
    )
    assert r.status_code == 403, r.text


def test_protected_labels_move_only_for_a_system_admin(world: World) -> None:
    path = "/admin/prompts/acme-greeting/labels/production"
    r = world.call("PUT", path, world.keys["acme-admin"], json={"version": 1, "protected": True})
    assert r.status_code == 403, r.text
    r = world.call("PUT", path + "?tenant=acme", json={"version": 1, "protected": True})
    assert r.status_code == 200 and r.json()["protected_labels"] == ["production"], r.text
    assert world.call("PUT", path, world.keys["acme-admin"], json={"version": 1}).status_code == 403
    assert world.call("DELETE", path, world.keys["acme-admin"]).status_code == 403
    assert world.call("DELETE", path + "?tenant=acme").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": {"id": "capital-qa"}}, 400, "prompt.variables.country"),
        ({"prompt": {"id": "capital-qa", "variables": {"country": 3}}}, 400, "prompt.variables.country"),
        (
            {"prompt": {"id": "capital-qa", "variables": {"country": "x", "extra": 1}}},
            400,
            "prompt.variables.extra",
        ),
        (
            {"prompt": {"id": "capital-qa", "version": "nope", "variables": {"country": "x"}}},
            404,
            "prompt.version",
        ),
        (
            {"prompt": {"id": "capital-qa", "version": "99", "variables": {"country": "x"}}},
            404,
            "prompt.version",
        ),
        ({"prompt": {"id": "no-such-prompt"}}, 404, "prompt.id"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
        ({"model": "prompted-chat"}, 400, "messages"),
        ({"prompt": {"version": "1"}}, 400, "prompt.id"),
        ({"prompt": {"id": "capital-qa", "variables": ["x"]}}, 400, "prompt.variables"),
        ({"model": "prompted-chat", "prompt": {"version": "1"}, "_path": "completions"}, 400, "prompt.id"),
        ({"prompt": "plain text", "_path": "completions"}, 400, "model"),
    ],
)
def test_bad_prompt_references_name_the_field(
    world: World, body: dict[str, Any], status: int, param: str
) -> None:
    path = "/v1/" + body.pop("_path", "chat/completions")
    r = world.call("POST", path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_prompt_without_a_model_and_a_request_without_one_is_400_naming_model(world: World) -> None:
    r = world.call(
        "POST", "/admin/prompts", json={"name": "no-model", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 201, r.text
    r = world.call("POST", "/v1/chat/completions", json={"prompt": {"id": "no-model"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model", r.text
    r = world.call("POST", "/v1/completions", json={"model": "prompted-chat", "prompt": {"id": "no-model"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt.id", r.text  # a chat prompt
    r = world.call("POST", "/admin/prompts", json={"name": "broken", "text": "{{ oops "})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text", r.text
    r = world.call("POST", "/admin/prompts", json={"name": "broken", "text": "x", "commit_message": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "commit_message", r.text
    r = world.call("GET", "/admin/prompts/broken")
    assert r.status_code == 404 and r.json()["error"]["param"] == "name", r.text  # nothing stored


def test_embedded_server_without_tenancy(mock_upstream: MockUpstream, tmp_path: Path) -> None:
    """The one-process default: SQLite, no keys; the admin routes act as the anonymous admin."""
    config = remote_config(mock_upstream.url, embedders=[])
    config["deployments"].append(
        {"model": "prompted-chat", "base_url": f"{mock_upstream.url}/v1", "upstream_model": UPSTREAM}
    )
    srv = RemoteServer(tmp_path, config)
    try:
        text = {"name": "greet", "text": "Hello {{ who }}", "variables": [{"name": "who", "default": "you"}]}
        r = httpx.post(
            f"{srv.url}/admin/prompts", json={**text, "model": "prompted-chat", "labels": ["production"]}
        )
        assert r.status_code == 201 and r.json()["tenant"] is None, r.text
        out = srv.client.completions.create(
            model=openai.NOT_GIVEN, prompt="", extra_body={"prompt": {"id": "greet"}}
        )  # type: ignore[arg-type]
        assert out.choices[0].text == "echo: Hello you" and out.model_extra["prompt"] == {
            "id": "greet",
            "version": "1",
        }
        assert world_received(mock_upstream)["prompt"] == "Hello you"
        listed = httpx.get(f"{srv.url}/admin/prompts").json()["data"]
        assert [(p["name"], p["labels"]) for p in listed] == [("greet", {"production": 1, "latest": 1})]
    finally:
        srv.close()


def world_received(upstream: MockUpstream) -> dict[str, Any]:
    r = httpx.get(f"{upstream.url}/last/{UPSTREAM}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_websocket_streams_carry_the_prompt_version(world: World) -> None:
    from websockets.sync.client import connect

    url = world.a.url.replace("http://", "ws://") + "/v1/chat/completions/ws"
    headers = {"authorization": f"Bearer {world.admin}"}
    ref = {"id": "capital-qa", "version": "1", "variables": {"country": "Japan"}}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        ws.send(orjson.dumps({"prompt": ref}).decode())
        frames = []
        while (frame := str(ws.recv(timeout=10))) != "[DONE]":
            frames.append(orjson.loads(frame))
    assert frames[0]["prompt"] == {"id": "capital-qa", "version": "1"}
    assert all("prompt" not in f for f in frames[1:])
    assert world.received()["messages"][1]["content"] == "What is the capital of Japan?"
