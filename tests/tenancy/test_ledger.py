"""Ledger exactness: after a mixed concurrent load (streams, non-streams, client disconnects, upstream
errors, internal retries) the usage records equal, request by request, the tokens the responses
reported, and each client request is metered exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from modelyard.tenancy.store import TenancyStore
from servers import MockUpstream, RemoteServer
from tenancy_support import SECRET, bootstrap_admin, tenancy_config


@pytest.fixture(scope="module")
def served(
    mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RemoteServer, str, str]]:
    tmp = tmp_path_factory.mktemp("ledger")
    db = f"sqlite:///{tmp / 'ledger.db'}"
    admin = bootstrap_admin(db)
    cfg = tenancy_config(mock_upstream.url, db, metering_flush_s=0.05, metering_batch=16)
    cfg["embedders"] = []
    srv = RemoteServer(tmp, cfg)
    h = {"authorization": f"Bearer {admin}"}
    httpx.post(srv.url + "/admin/tenants", headers=h, json={"id": "acme", "models": ["*"]}).raise_for_status()
    key = httpx.post(srv.url + "/admin/keys", headers=h, json={"tenant": "acme"}).json()["key"]
    yield srv, key, db
    srv.close()


def _usage_from_sse(text: str) -> dict[str, Any] | None:
    for line in text.splitlines():
        if line.startswith("data: {") and '"usage"' in line:
            u = orjson.loads(line[6:]).get("usage")
            if u:
                return u
    return None


async def _one(
    client: httpx.AsyncClient, url: str, key: str, kind: str, i: int
) -> tuple[str, str, dict[str, Any] | None]:
    rid = f"ledger{uuid.uuid4().hex}"
    h = {"authorization": f"Bearer {key}", "x-request-id": rid}
    msg = [{"role": "user", "content": " ".join(f"word{j}" for j in range(i % 7 + 1))}]
    if kind == "plain":
        r = await client.post(
            url, headers=h, json={"model": "remote-chat", "messages": msg, "max_tokens": i % 5 + 1}
        )
        return rid, str(r.status_code), r.json().get("usage")
    if kind == "retried":  # 'flaky' fails every other call upstream; the gateway retries inside
        r = await client.post(url, headers=h, json={"model": "flaky", "messages": msg, "max_tokens": 3})
        return rid, str(r.status_code), r.json().get("usage")
    if kind in ("stream", "stream_usage"):
        body: dict[str, Any] = {"model": "remote-chat", "messages": msg, "max_tokens": 4, "stream": True}
        if kind == "stream_usage":
            body["stream_options"] = {"include_usage": True}
        r = await client.post(url, headers=h, json=body)
        usage = _usage_from_sse(r.text)
        assert (usage is not None) == (kind == "stream_usage")  # hidden unless asked for
        return rid, str(r.status_code), usage
    if kind == "disconnect":
        body = {"model": "slow", "messages": msg, "max_tokens": 100, "stream": True}
        async with client.stream("POST", url, headers=h, json=body) as r:
            async for _ in r.aiter_lines():
                break  # walk away after the first line
        return rid, "disconnected", None
    if kind == "error":
        r = await client.post(url, headers=h, json={"model": "broken", "messages": msg})
        return rid, str(r.status_code), None
    raise AssertionError(kind)


async def test_ledger_matches_responses_request_by_request(served: tuple[RemoteServer, str, str]) -> None:
    srv, key, db = served
    kinds = ["plain", "stream", "stream_usage", "disconnect", "error", "retried"]
    url = srv.url + "/v1/chat/completions"
    async with httpx.AsyncClient(timeout=60) as client:
        results = await asyncio.gather(*(_one(client, url, key, kinds[i % len(kinds)], i) for i in range(60)))
    store = TenancyStore(db, SECRET.encode())
    try:
        deadline = time.monotonic() + 10
        while True:
            rows = {
                r["request_id"]: r for r in store.usage_rows("acme") if r["request_id"].startswith("ledger")
            }
            if len(rows) >= len(results) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        store.close()
    assert len(rows) == len(results)  # once each: retries inside the gateway add no record
    reported_total = recorded_total = 0
    for rid, status, usage in results:
        row = rows[rid]
        if status == "200" and usage is not None:
            assert (row["prompt_tokens"], row["completion_tokens"]) == (
                usage["prompt_tokens"],
                usage["completion_tokens"],
            )
            assert row["status"] == "ok"
            reported_total += usage["total_tokens"]
            recorded_total += row["prompt_tokens"] + row["completion_tokens"]
        elif status == "200":  # a stream without include_usage: the gateway asked upstream anyway
            assert row["status"] == "ok" and row["completion_tokens"] > 0
        elif status == "disconnected":
            assert row["status"] in ("disconnected", "ok")
        else:
            assert (
                row["status"] == f"error_{status}" and row["prompt_tokens"] == row["completion_tokens"] == 0
            )
    assert reported_total == recorded_total > 0
