"""Registry prices on a running ``modelyard serve`` (tenancy on): ``PUT /admin/models/{name}/prices``
changes the cost in the next request's usage record, a change written straight to the registry is
picked up within ``registry_poll_s``, ``DELETE`` falls back to ``tenancy.prices``, bad prices are
OpenAI-shaped 400s, only a system admin may change prices, and every change is audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from modelyard.registry import Registry
from modelyard.tenancy.store import TenancyStore
from servers import MockUpstream, RemoteServer
from tenancy_support import SECRET, bootstrap_admin, tenancy_config

SETTINGS_PRICE = {"prompt_per_1k": 1.0, "completion_per_1k": 1.0}


class Priced:
    def __init__(self, srv: RemoteServer, db: str, admin: str, key: str) -> None:
        self.srv, self.db, self.admin, self.key = srv, db, admin, key
        self.store = TenancyStore(db, SECRET.encode())
        self.client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0, timeout=30)

    def admin_call(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.admin}", **kw.pop("headers", {})}
        return httpx.request(method, self.srv.url + path, headers=headers, timeout=10, **kw)

    def request_cost(self) -> tuple[float, int, int]:
        """Send one chat request; return (cost, prompt, completion) from its usage record."""
        done = self.client.chat.completions.with_raw_response.create(
            model="remote-chat", messages=[{"role": "user", "content": "price me"}], max_tokens=5
        )
        rid = done.headers["x-request-id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = [r for r in self.store.usage_rows("acme") if r["request_id"] == rid]
            if rows:
                r = rows[0]
                return r["cost"], r["prompt_tokens"], r["completion_tokens"]
            time.sleep(0.05)
        raise AssertionError(f"no usage record for {rid}")


@pytest.fixture(scope="module")
def priced(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Priced]:
    tmp = tmp_path_factory.mktemp("prices")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    admin = bootstrap_admin(db)
    config = tenancy_config(mock_upstream.url, db, prices={"remote-chat": SETTINGS_PRICE})
    config.update(embedders=[], registry_poll_s=0.2)
    srv = RemoteServer(tmp, config)
    headers = {"authorization": f"Bearer {admin}"}
    httpx.post(
        srv.url + "/admin/tenants", headers=headers, json={"id": "acme", "models": ["*"]}
    ).raise_for_status()
    key = httpx.post(
        srv.url + "/admin/keys", headers=headers, json={"tenant": "acme", "scopes": ["admin", "inference"]}
    )
    p = Priced(srv, db, admin, key.json()["key"])
    r = p.admin_call("POST", "/admin/models", json={"name": "remote-chat"})
    assert r.status_code == 201, r.text
    try:
        yield p
    finally:
        p.client.close()
        p.store.close()
        srv.close()


def _cost(price: dict[str, float], prompt: int, completion: int) -> float:
    return prompt / 1000 * price["prompt_per_1k"] + completion / 1000 * price["completion_per_1k"]


def test_a_price_change_reaches_the_next_usage_record(priced: Priced) -> None:
    cost, prompt, completion = priced.request_cost()
    assert prompt > 0 and completion > 0
    assert cost == pytest.approx(_cost(SETTINGS_PRICE, prompt, completion))  # settings fallback

    new = {"prompt_per_1k": 30.0, "completion_per_1k": 60.0}
    r = priced.admin_call("PUT", "/admin/models/remote-chat/prices", json=new)
    assert r.status_code == 200, r.text
    assert r.json()["prices"] == new
    cost, prompt, completion = priced.request_cost()
    assert cost == pytest.approx(_cost(new, prompt, completion))

    # A change made elsewhere (another process, the CLI) arrives through the registry poll.
    registry = Registry(priced.db)
    try:
        registry.set_prices("remote-chat", prompt_per_1k=100.0, completion_per_1k=200.0)
    finally:
        registry.close()
    expected = {"prompt_per_1k": 100.0, "completion_per_1k": 200.0}
    deadline = time.monotonic() + 10
    while True:
        cost, prompt, completion = priced.request_cost()
        if cost == pytest.approx(_cost(expected, prompt, completion)) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert cost == pytest.approx(_cost(expected, prompt, completion))

    r = priced.admin_call("DELETE", "/admin/models/remote-chat/prices")
    assert r.status_code == 200 and r.json()["prices"] is None
    cost, prompt, completion = priced.request_cost()
    assert cost == pytest.approx(_cost(SETTINGS_PRICE, prompt, completion))

    audit = priced.admin_call("GET", "/admin/audit").json()
    entries = audit["data"] if isinstance(audit, dict) else audit
    actions = [(e["actor"], e["action"], e["target"]) for e in entries]
    # the admin key's changes carry its id; the direct registry write above is the `system`'s
    admin_actions = [a for a in actions if a[0] not in ("system", "cli")]
    assert {a[1:] for a in admin_actions} >= {
        ("model.prices.set", "remote-chat"),
        ("model.prices.clear", "remote-chat"),
    }
    assert ("system", "model.prices.set", "remote-chat") in actions


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt_per_1k": -1, "completion_per_1k": 1}',
        b'{"prompt_per_1k": NaN, "completion_per_1k": 1}',
        b'{"prompt_per_1k": 1, "completion_per_1k": 1e400}',
        b'{"prompt_per_1k": 1}',
    ],
)
def test_bad_prices_are_openai_shaped_400s(priced: Priced, body: bytes) -> None:
    r = priced.admin_call(
        "PUT", "/admin/models/remote-chat/prices", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_only_a_system_admin_sets_prices(priced: Priced) -> None:
    good = {"prompt_per_1k": 1.0, "completion_per_1k": 1.0}
    r = priced.admin_call("PUT", "/admin/models/remote-chat/prices", key=priced.key, json=good)
    assert r.status_code == 403
    r = priced.admin_call("PUT", "/admin/models/nope/prices", json=good)
    assert r.status_code == 404
