"""Two ``modelyard serve`` processes sharing the real Redis (limit and budget counters) and the real
PostgreSQL (keys, ledger): together they admit what one process would.

Bounds checked (token buckets, see ``tenancy/limits.py``): over a burst lasting ``T`` seconds, at
most ``limit * (1 + T / 60)`` requests (RPM) or tokens (TPM) are admitted. Budgets never overshoot.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.tenancy.admission import prompt_upper_bound
from servers import MockUpstream, RemoteServer
from tenancy_support import REDIS_URL, bootstrap_admin, fresh_database_url, tenancy_config

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

MSG = [{"role": "user", "content": "count to three"}]


class Pair:
    def __init__(self, servers: list[RemoteServer], admin: str, db: str) -> None:
        self.servers, self.admin, self.db = servers, admin, db

    def admin_call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = httpx.request(
            method,
            self.servers[0].url + path,
            headers={"authorization": f"Bearer {self.admin}"},
            timeout=10,
            **kw,
        )
        assert r.status_code < 300, r.text
        return r

    def tenant(self, limits: dict[str, Any] | None = None, budget: dict[str, Any] | None = None) -> str:
        tid = f"t{secrets.token_hex(3)}"
        body = {"id": tid, "models": ["remote-chat", "slow"], "limits": limits or {}, "budget": budget or {}}
        self.admin_call("POST", "/admin/tenants", json=body)
        return str(
            self.admin_call("POST", "/admin/keys", json={"tenant": tid, "scopes": ["inference"]}).json()[
                "key"
            ]
        )

    async def burst(self, key: str, n: int, body: dict[str, Any]) -> tuple[list[httpx.Response], float]:
        """``n`` concurrent requests, alternating between the two servers; (responses, seconds)."""
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
            t0 = time.monotonic()
            rs = await asyncio.gather(
                *(
                    client.post(
                        self.servers[i % 2].url + "/v1/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for i in range(n)
                )
            )
            return list(rs), time.monotonic() - t0


@pytest.fixture(scope="module")
def pair(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("pair")
    urls = fresh_database_url("postgres", tmp)
    db = next(urls)
    prefix = f"modelyard-test:{secrets.token_hex(6)}:"
    admin = bootstrap_admin(db)
    servers = []
    try:
        for i in range(2):
            cfg = tenancy_config(mock_upstream.url, db, redis_url=REDIS_URL, redis_prefix=prefix)
            cfg["embedders"] = []
            d = tmp / f"s{i}"
            d.mkdir()
            servers.append(RemoteServer(d, cfg))
        yield Pair(servers, admin, db)
    finally:
        for s in servers:
            s.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
        next(urls, None)


def _check_429(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


async def test_rpm_across_two_processes(pair: Pair) -> None:
    rpm = 20
    key = pair.tenant({"rpm": rpm})
    rs, took = await pair.burst(key, 60, {"model": "remote-chat", "messages": MSG, "max_tokens": 3})
    ok = [r for r in rs if r.status_code == 200]
    for r in rs:
        if r.status_code != 200:
            _check_429(r)
            assert r.headers["x-ratelimit-limit-requests"] == str(rpm)
    bound = math.floor(rpm * (1 + took / 60))
    print(f"\nRPM {rpm}: {len(ok)} of 60 admitted over 2 processes in {took:.2f}s (bound {bound})")
    assert rpm <= len(ok) <= bound, (len(ok), bound, took)
    assert {r.headers["x-ratelimit-limit-requests"] for r in ok} == {str(rpm)}


async def test_tpm_across_two_processes(pair: Pair) -> None:
    body = {"model": "remote-chat", "messages": MSG, "max_tokens": 3}
    reserved = prompt_upper_bound(ChatCompletionRequest.model_validate(body)) + 3
    tpm = reserved * 10
    key = pair.tenant({"tpm": tpm})
    rs, took = await pair.burst(key, 40, body)
    ok = [r for r in rs if r.status_code == 200]
    assert any(r.status_code == 429 for r in rs)
    for r in rs:
        if r.status_code != 200:
            _check_429(r)
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    print(
        f"\nTPM {tpm}: {len(ok)} of 40 admitted, {used} tokens used in {took:.2f}s (bound {tpm * (1 + took / 60):.0f})"
    )
    assert used <= tpm * (1 + took / 60), (used, tpm, took)
    assert len(ok) >= 10  # the first ten always fit the worst case


async def test_concurrency_cap_across_two_processes(pair: Pair) -> None:
    key = pair.tenant({"concurrency": 3})
    body = {"model": "slow", "messages": MSG, "max_tokens": 10, "stream": True}
    rs, _ = await pair.burst(key, 12, body)
    assert sum(r.status_code == 200 for r in rs) == 3
    # slots are freed when the streams end
    rs, _ = await pair.burst(key, 3, body)
    assert all(r.status_code == 200 for r in rs)


async def test_budget_race_50_for_10(pair: Pair) -> None:
    body = {
        "model": "slow",
        "messages": MSG,
        "max_tokens": 20,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    reserved = prompt_upper_bound(ChatCompletionRequest.model_validate(body)) + 20
    budget = reserved * 10
    key = pair.tenant(budget={"tokens": budget})
    rs, _ = await pair.burst(key, 50, body)
    ok = [r for r in rs if r.status_code == 200]
    refused = [r for r in rs if r.status_code != 200]
    for r in refused:
        assert r.status_code == 429 and r.headers["x-should-retry"] == "false", r.text
        assert r.json()["error"]["code"] == "budget_exceeded"
    assert len(ok) >= 10
    spent = sum(_stream_usage(r) for r in ok)
    print(f"\nbudget {budget} tokens (10 worst cases of {reserved}): {len(ok)} of 50 admitted, spent {spent}")
    assert spent <= budget, (spent, budget)
    # Settlement gave back each request's unused reservation; spend it until the budget refuses.
    async with httpx.AsyncClient(timeout=60) as c:
        for i in range(40):
            r = await c.post(
                pair.servers[i % 2].url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
            )
            if r.status_code != 200:
                break
            spent += _stream_usage(r)
    assert r.status_code == 429 and r.headers["x-should-retry"] == "false"
    assert spent <= budget, (spent, budget)
    print(f"budget spent to exhaustion: {spent} of {budget}")
    assert spent > budget - reserved  # refused only when a worst case no longer fits


def _stream_usage(r: httpx.Response) -> int:
    usage = [line for line in r.text.splitlines() if '"usage"' in line and '"choices":[]' in line]
    assert len(usage) == 1
    return int(httpx.Response(200, content=usage[0][6:]).json()["usage"]["total_tokens"])


def test_revocation_reaches_the_other_process_at_once(pair: Pair) -> None:
    key = pair.tenant()
    body = {"model": "remote-chat", "messages": MSG, "max_tokens": 2}
    h = {"authorization": f"Bearer {key}"}
    for s in pair.servers:
        assert httpx.post(s.url + "/v1/chat/completions", json=body, headers=h).status_code == 200
    key_id = next(
        k["id"]
        for k in pair.admin_call("GET", "/admin/keys").json()["data"]
        if k["prefix"] == key.split("-")[1]
    )
    pair.admin_call("DELETE", f"/admin/keys/{key_id}")
    assert httpx.post(pair.servers[1].url + "/v1/chat/completions", json=body, headers=h).status_code == 401
