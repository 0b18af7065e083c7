"""Every route the app mounts is either on the public list or closed: without a key it answers 401, and
with another tenant's keys it shows none of the first tenant's data. The routes are walked from
``create_app`` itself (the mounted ``/admin`` app and the WebSocket route included), so a route added
later is checked without anyone listing it here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from modelyard.app import create_app
from modelyard.settings import Settings
from modelyard.tenancy.auth import PUBLIC_PATHS, is_public
from servers import MockUpstream, RemoteServer
from tenancy_support import bootstrap_admin, tenancy_config

CANARY = "zebra-canary-4417"  # only ever in tenant acme's prompt


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path template) of every HTTP route and ("WS", path) of every WebSocket route."""
    for r in routes:
        if isinstance(r, Mount):
            yield from walk(list(r.routes), prefix + r.path)
        elif isinstance(r, WebSocketRoute):
            yield "WS", prefix + r.path
        elif isinstance(r, Route) or hasattr(r, "methods"):
            for method in sorted(set(getattr(r, "methods", None) or ()) - {"HEAD"}):
                yield method, prefix + r.path  # type: ignore[attr-defined]
        elif hasattr(r, "original_router"):  # FastAPI's included routers
            yield from walk(list(r.original_router.routes), prefix + r.include_context.prefix)  # type: ignore[attr-defined]
        else:
            raise AssertionError(f"route of unknown kind {type(r).__name__}: teach this walker about it")


ROUTES = sorted(set(walk(list(create_app(Settings()).routes))))


def test_the_walk_finds_every_mounted_route() -> None:
    paths = {re.sub(r":\w+\}", "}", p) for _, p in ROUTES}
    from modelyard.http.admin import create_admin_app

    for path in create_admin_app().openapi()["paths"]:
        assert "/admin" + path in paths, f"walker missed /admin{path}"
    assert ("WS", "/v1/chat/completions/ws") in ROUTES
    assert ("GET", "/monitoring/logs") in ROUTES
    assert PUBLIC_PATHS <= paths


class World:
    def __init__(self, srv: RemoteServer, admin: str) -> None:
        self.srv, self.admin = srv, admin
        self.keys: dict[str, str] = {}
        self.key_ids: dict[str, str] = {}

    def call(self, method: str, path: str, key: str | None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.srv.url + path, headers=headers, timeout=15, **kw)

    def make_key(self, label: str, tenant: str | None, scopes: list[str]) -> None:
        r = self.call("POST", "/admin/keys", self.admin, json={"tenant": tenant, "scopes": scopes})
        assert r.status_code == 201, r.text
        self.keys[label], self.key_ids[label] = r.json()["key"], r.json()["id"]

    def markers(self) -> list[str]:
        """Strings that only tenant acme's data contains."""
        acme = [v for k, v in self.keys.items() if k.startswith("acme")]
        acme += [v for k, v in self.key_ids.items() if k.startswith("acme")]
        return [CANARY, "acme-support", *acme]

    def concrete(self, template: str) -> str:
        """A path for ``template`` whose parameters name tenant acme's objects."""
        values = {
            "tenant_id": "acme",
            "key_id": self.key_ids["acme"],
            "model_name": "remote-chat",
            "model_id": "remote-chat",
            "name": "remote-chat",
            "alias": "production",
            "label": "production",
            "version": "1",
        }
        return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "x"), template)


@pytest.fixture(scope="module")
def world(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("route-auth")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    admin = bootstrap_admin(db)
    config = tenancy_config(mock_upstream.url, db)
    config["embedders"] = []
    srv = RemoteServer(tmp, config)
    w = World(srv, admin)
    try:
        for tenant in ("acme", "globex"):
            r = w.call("POST", "/admin/tenants", admin, json={"id": tenant, "models": ["remote-chat"]})
            assert r.status_code == 201, r.text
        w.make_key("acme", "acme", ["inference"])
        w.make_key("acme-admin", "acme", ["admin"])
        for scope in ("inference", "read", "admin"):
            w.make_key(f"globex-{scope}", "globex", [scope])
        w.make_key("system-admin", None, ["admin"])
        adapter = tmp / "acme-support"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
        (adapter / "adapter_model.safetensors").write_bytes(b"")
        r = w.call(
            "POST",
            "/admin/adapters",
            w.keys["acme-admin"],
            json={"base_model": "remote-chat", "name": "acme-support", "path": str(adapter)},
        )
        assert r.status_code == 201, r.text
        prompt = {"name": "remote-chat", "text": f"acme-support {CANARY}", "labels": ["production"]}
        r = w.call("POST", "/admin/prompts", w.keys["acme-admin"], json=prompt)  # acme's own prompt
        assert r.status_code == 201, r.text
        r = w.call(
            "POST",
            "/v1/chat/completions",
            w.keys["acme"],
            json={"model": "remote-chat", "messages": [{"role": "user", "content": f"say {CANARY}"}]},
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while CANARY not in w.call("GET", "/monitoring/logs", admin).text:  # the log writer is async
            assert time.monotonic() < deadline, "acme's request never reached the request log"
            time.sleep(0.2)
        yield w
    finally:
        srv.close()


def _body(method: str) -> dict[str, Any] | None:
    return {} if method in ("POST", "PUT", "PATCH") else None


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_route_without_a_key_is_public_or_refused(world: World, method: str, template: str) -> None:
    path = world.concrete(template)
    if method == "WS":
        with pytest.raises(InvalidStatus) as info:
            with connect(world.srv.url.replace("http://", "ws://") + path, open_timeout=10):
                pass
        assert info.value.response.status_code == 401
        return
    r = world.call(method, path, None, json=_body(method))
    if is_public(template, metrics_require_key=False):
        assert r.status_code in (200, 503), (r.status_code, r.text[:300])
        for marker in world.markers():
            assert marker not in r.text, f"public {template} shows {marker!r}"
        return
    assert r.status_code == 401, (method, path, r.status_code, r.text[:300])
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("label", ["globex-inference", "globex-read", "globex-admin"])
@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_route_with_another_tenants_key_shows_nothing_of_the_first(
    world: World, method: str, template: str, label: str
) -> None:
    path = world.concrete(template)
    key = world.keys[label]
    if method == "WS":
        url = world.srv.url.replace("http://", "ws://") + path
        if label == "globex-read":
            with pytest.raises(InvalidStatus) as info:
                with connect(url, additional_headers={"authorization": f"Bearer {key}"}, open_timeout=10):
                    pass
            assert info.value.response.status_code == 403
        else:
            with connect(url, additional_headers={"authorization": f"Bearer {key}"}, open_timeout=10) as ws:
                ws.send('{"model": "acme-support", "messages": [{"role": "user", "content": "hi"}]}')
                frame = str(ws.recv(timeout=10))
                assert '"status":404' in frame.replace(" ", ""), frame
        return
    r = world.call(method, path, key, json=_body(method))
    assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
    if r.status_code < 300:
        markers = world.markers() + ([] if is_public(template, metrics_require_key=False) else ["acme"])
        for marker in markers:
            assert marker not in r.text, f"{method} {path} with {label} shows {marker!r}: {r.text[:300]}"


def test_request_log_is_scoped_to_the_callers_tenant(world: World) -> None:
    own = world.call("GET", "/monitoring/logs", world.keys["acme-admin"]).json()["data"]
    assert own and all(row["tenant"] == "acme" for row in own)
    assert any(CANARY in (row.get("prompt") or "") for row in own) or CANARY in str(own)
    system = world.call("GET", "/monitoring/logs?tenant=acme", world.admin)
    assert system.status_code == 200 and CANARY in system.text
    for label in ("globex-read", "globex-admin"):
        key = world.keys[label]
        r = world.call("GET", "/monitoring/logs", key)
        assert r.status_code == 200 and CANARY not in r.text
        assert all(row["tenant"] == "globex" for row in r.json()["data"])
        for query in ("?tenant=acme", f"?contains={CANARY}", "?model=remote-chat&limit=1000"):
            r = world.call("GET", "/monitoring/logs" + query, key)
            assert CANARY not in r.text, query
            assert r.status_code in (200, 404), (query, r.status_code)
        assert world.call("GET", "/monitoring/logs?tenant=acme", key).status_code == 404
    inference_only = world.call("GET", "/monitoring/logs", world.keys["globex-inference"])
    assert inference_only.status_code == 403


def test_system_routes_need_a_key_without_a_tenant(world: World) -> None:
    assert world.call("GET", "/stats", world.keys["globex-admin"]).status_code == 403
    assert world.call("GET", "/stats", world.keys["system-admin"]).status_code == 200
    assert world.call("GET", "/metrics", None).status_code == 200  # public unless metrics_require_key


@pytest.fixture(scope="module")
def locked_metrics(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp: Path = tmp_path_factory.mktemp("metrics-key")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    admin = bootstrap_admin(db)
    config = tenancy_config(mock_upstream.url, db, metrics_require_key=True)
    config["embedders"] = []
    srv = RemoteServer(tmp, config)
    w = World(srv, admin)
    try:
        assert w.call("POST", "/admin/tenants", admin, json={"id": "acme"}).status_code == 201
        w.make_key("acme-admin", "acme", ["admin"])
        w.make_key("system-admin", None, ["admin"])
        yield w
    finally:
        srv.close()


def test_metrics_behind_a_key_when_configured(locked_metrics: World) -> None:
    w = locked_metrics
    assert w.call("GET", "/metrics", None).status_code == 401
    assert w.call("GET", "/metrics", w.keys["acme-admin"]).status_code == 403
    r = w.call("GET", "/metrics", w.keys["system-admin"])
    assert r.status_code == 200 and "modelyard_" in r.text
    assert w.call("GET", "/health", None).status_code == 200


def test_top_sends_its_key(locked_metrics: World) -> None:
    from modelyard.monitoring.top import scrape

    with pytest.raises(httpx.HTTPStatusError):
        scrape(locked_metrics.srv.url)
    samples = scrape(locked_metrics.srv.url, api_key=locked_metrics.keys["system-admin"])
    assert any(name.startswith("modelyard_") for name, _ in samples)
