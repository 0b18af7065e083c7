"""Shadow traffic on a real ``modelyard serve`` with tenancy, through the ``openai`` client: the client's
answer equals the upstream's own (shadowing changes nothing it sees), every mirrored request reaches
the shadow targets (a failing one counted as errors), and no shadow request is in the tenant's usage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from servers import MockUpstream, RemoteServer
from tenancy_support import bootstrap_admin, tenancy_config

N = 8


@pytest.fixture(scope="module")
def shadowed(
    mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RemoteServer, str, str]]:
    tmp: Path = tmp_path_factory.mktemp("shadow")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    admin = bootstrap_admin(db)
    config = tenancy_config(mock_upstream.url, db)
    config.update(
        embedders=[], experiments={"shadows": [{"route": "remote-chat", "targets": ["slow", "broken"]}]}
    )
    srv = RemoteServer(tmp, config)
    try:
        h = {"authorization": f"Bearer {admin}"}
        r = httpx.post(f"{srv.url}/admin/tenants", headers=h, json={"id": "acme", "models": ["remote-chat"]})
        assert r.status_code == 201, r.text
        r = httpx.post(
            f"{srv.url}/admin/keys", headers=h, json={"tenant": "acme", "scopes": ["inference", "admin"]}
        )
        yield srv, admin, r.json()["key"]
    finally:
        srv.close()


def test_shadows_are_replayed_unseen_and_unmetered(
    shadowed: tuple[RemoteServer, str, str], mock_upstream: MockUpstream
) -> None:
    srv, admin, key = shadowed
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "tell me about shadows"}]
    for i in range(N):
        got = client.chat.completions.create(model="remote-chat", messages=messages, max_tokens=6, seed=i)  # type: ignore[arg-type]
        direct = httpx.post(
            f"{mock_upstream.url}/v1/chat/completions",
            json={"model": "mock", "messages": messages, "max_tokens": 6, "seed": i},
        ).json()
        assert got.choices[0].message.content == direct["choices"][0]["message"]["content"]
        assert got.usage is not None and got.usage.completion_tokens == direct["usage"]["completion_tokens"]
    with client.chat.completions.create(
        model="remote-chat", messages=messages, max_tokens=6, stream=True
    ) as s:  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in s if c.choices)
    h = {"authorization": f"Bearer {admin}"}
    deadline = time.monotonic() + 20
    while True:
        doc = httpx.get(f"{srv.url}/admin/shadows", headers=h).json()
        done = doc["targets"].get("slow", {}).get("requests", 0) + doc["targets"].get("broken", {}).get(
            "requests", 0
        )
        if done == 2 * (N + 1):
            break
        assert time.monotonic() < deadline, doc
        time.sleep(0.3)
    slow, broken = doc["targets"]["slow"], doc["targets"]["broken"]
    assert slow["errors"] == 0 and slow["output_tokens"] > 0 and slow["similarity_mean"] is not None
    assert broken["errors"] == N + 1 and doc["dropped"] == 0
    assert (
        httpx.get(f"{srv.url}/admin/shadows", headers={"authorization": f"Bearer {key}"}).status_code == 403
    )
    deadline = time.monotonic() + 20
    while True:  # metering is written in batches
        usage = httpx.get(f"{srv.url}/admin/usage?tenant=acme&group_by=model", headers=h).json()["data"]
        if sum(row["requests"] for row in usage) >= N + 1:
            break
        assert time.monotonic() < deadline, usage
        time.sleep(0.3)
    time.sleep(1.0)  # a shadow's usage, were it metered, would have landed by now too
    usage = httpx.get(f"{srv.url}/admin/usage?tenant=acme&group_by=model", headers=h).json()["data"]
    assert {row["model"] for row in usage} == {"remote-chat"}, usage
    assert sum(row["requests"] for row in usage) == N + 1, usage
