"""The principal cache keeps revocation immediate across processes.

Two ``modelyard serve`` processes share the real PostgreSQL and Redis; a key is used on both (so both
cache it), then changed through the admin API of process A or the CLI (which writes the database
directly). The very next request on process B must see the change. A control shows the cache is
really serving: a change written to the database behind the store's back (no audit, no epoch bump)
is *not* seen until the next audited change bumps the epoch.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from servers import MockUpstream, RemoteServer
from tenancy_support import REDIS_URL, bootstrap_admin, fresh_database_url, tenancy_config

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

BODY = {"model": "remote-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


class Fleet:
    def __init__(self, a: RemoteServer, b: RemoteServer, admin: str, db: str) -> None:
        self.a, self.b, self.admin, self.db = a, b, admin, db

    def admin_call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = httpx.request(
            method, self.a.url + path, headers={"authorization": f"Bearer {self.admin}"}, timeout=10, **kw
        )
        assert r.status_code < 300, r.text
        return dict(r.json())

    def cli(self, *args: str) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "modelyard.cli", *args, "--config", str(self.a.config_path)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr

    def tenant(self, **key: Any) -> tuple[str, str, str]:
        """(tenant id, key id, key) of a fresh tenant allowed ``remote-chat``."""
        tid = f"t{secrets.token_hex(3)}"
        self.admin_call("POST", "/admin/tenants", json={"id": tid, "models": ["remote-chat"]})
        made = self.admin_call("POST", "/admin/keys", json={"tenant": tid, "scopes": ["inference"], **key})
        return tid, made["id"], made["key"]

    def warm(self, key: str) -> None:
        """Use ``key`` twice on each process: both now hold it in their cache."""
        for srv in (self.a, self.b, self.a, self.b):
            assert self.chat(srv, key).status_code == 200

    @staticmethod
    def chat(srv: RemoteServer, key: str) -> httpx.Response:
        return httpx.post(
            srv.url + "/v1/chat/completions",
            json=BODY,
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def fleet(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("authcache")
    urls = fresh_database_url("postgres", tmp)
    db = next(urls)
    prefix = f"modelyard-test:{secrets.token_hex(6)}:"
    admin = bootstrap_admin(db)
    servers: list[RemoteServer] = []
    try:
        for i in range(2):
            cfg = tenancy_config(mock_upstream.url, db, redis_url=REDIS_URL, redis_prefix=prefix)
            cfg["embedders"] = []
            d = tmp / f"s{i}"
            d.mkdir()
            servers.append(RemoteServer(d, cfg))
        yield Fleet(servers[0], servers[1], admin, db)
    finally:
        for s in servers:
            s.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
        next(urls, None)


@pytest.mark.parametrize("via", ["api", "cli"])
def test_revoke_is_seen_by_the_other_process(fleet: Fleet, via: str) -> None:
    _, key_id, key = fleet.tenant()
    fleet.warm(key)
    if via == "api":
        fleet.admin_call("DELETE", f"/admin/keys/{key_id}")
    else:
        fleet.cli("keys", "revoke", key_id)
    r = fleet.chat(fleet.b, key)
    assert r.status_code == 401, r.text
    assert fleet.chat(fleet.a, key).status_code == 401


@pytest.mark.parametrize("via", ["api", "cli"])
def test_tenant_disable_is_seen_by_the_other_process(fleet: Fleet, via: str) -> None:
    tid, _, key = fleet.tenant()
    fleet.warm(key)
    if via == "api":
        fleet.admin_call("PATCH", f"/admin/tenants/{tid}", json={"disabled": True})
    else:
        fleet.cli("tenants", "update", tid, "--disabled")
    assert fleet.chat(fleet.b, key).status_code == 401
    assert fleet.chat(fleet.a, key).status_code == 401


@pytest.mark.parametrize("via", ["api", "cli"])
def test_model_access_removal_is_seen_by_the_other_process(fleet: Fleet, via: str) -> None:
    tid, _, key = fleet.tenant()
    fleet.warm(key)
    if via == "api":
        fleet.admin_call("PATCH", f"/admin/tenants/{tid}", json={"models": ["flaky"]})
    else:
        fleet.cli("tenants", "update", tid, "-m", "flaky")
    r = fleet.chat(fleet.b, key)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found"


def test_limit_change_is_seen_by_the_other_process(fleet: Fleet) -> None:
    tid, _, key = fleet.tenant()
    fleet.admin_call("PATCH", f"/admin/tenants/{tid}", json={"limits": {"rpm": 1000}})
    fleet.warm(key)
    assert fleet.chat(fleet.b, key).headers["x-ratelimit-limit-requests"] == "1000"
    fleet.admin_call("PATCH", f"/admin/tenants/{tid}", json={"limits": {"rpm": 500}})
    assert fleet.chat(fleet.b, key).headers["x-ratelimit-limit-requests"] == "500"


def test_expiry_is_honoured_on_a_cache_hit(fleet: Fleet) -> None:
    _, _, key = fleet.tenant(expires_in_s=4)
    t0 = time.monotonic()
    fleet.warm(key)
    assert time.monotonic() - t0 < 3.5, "too slow to warm before expiry; the check below would be vacuous"
    time.sleep(max(0.0, 4.2 - (time.monotonic() - t0)))
    assert fleet.chat(fleet.b, key).status_code == 401
    assert fleet.chat(fleet.a, key).status_code == 401


def test_cache_serves_until_the_epoch_moves(fleet: Fleet) -> None:
    """Control: a revoke written behind the store's back (no audit, no bump) is not seen while the
    cached entry's epoch is current, so the tests above do exercise the cache; the next audited change
    (here an unrelated tenant's creation) moves the epoch and the revoke takes effect."""
    _, key_id, key = fleet.tenant()
    fleet.warm(key)
    engine = create_engine(fleet.db)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": key_id})
    finally:
        engine.dispose()
    assert fleet.chat(fleet.b, key).status_code == 200  # cached: the epoch did not move
    fleet.tenant()  # any audited change bumps the epoch
    assert fleet.chat(fleet.b, key).status_code == 401
    assert fleet.chat(fleet.a, key).status_code == 401
