"""``/admin/rag`` through the real server (subprocess, real MiniLM), on each vector store: auth,
OpenAI-shaped errors, ingest and query, and 20 concurrent clients querying while the alias swaps."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rag_stores import STORES

from servers import MockUpstream, RemoteServer
from tenancy_support import bootstrap_admin, tenancy_config

pytestmark = pytest.mark.slow
KB = Path(__file__).parents[2] / "evals" / "rag"
QUERIES = [json.loads(line)["query"] for line in (KB / "queries.jsonl").read_text().splitlines()[:8]]


class Api:
    def __init__(self, srv: RemoteServer, admin: str, tenant_admin: str) -> None:
        self.srv, self.admin, self.tenant_admin = srv, admin, tenant_admin
        self.http = httpx.Client(base_url=srv.url, timeout=60)

    def call(self, method: str, path: str, key: str | None = "admin", **kw: Any) -> httpx.Response:
        token = {"admin": self.admin, "tenant": self.tenant_admin}.get(key or "", key)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, "/admin/rag" + path, headers=headers, **kw)


@pytest.fixture(scope="module", params=STORES)
def api(
    request: pytest.FixtureRequest, mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp(f"rag-http-{request.param}")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    admin = bootstrap_admin(db)
    config = tenancy_config(mock_upstream.url, db)
    config["embedders"] = []
    if request.param == "pgvector":
        config["rag"] = {"store": "pgvector", "pgvector_url": request.getfixturevalue("pgvector_url"),
                         "pgvector_schema": "http_test"}  # fmt: skip
    srv = RemoteServer(tmp, config)
    try:
        headers = {"authorization": f"Bearer {admin}"}
        r = httpx.post(f"{srv.url}/admin/tenants", headers=headers, json={"id": "acme"})
        assert r.status_code == 201, r.text
        r = httpx.post(f"{srv.url}/admin/keys", headers=headers, json={"tenant": "acme", "scopes": ["admin"]})
        assert r.status_code == 201, r.text
        yield Api(srv, admin, r.json()["key"])
    finally:
        srv.close()


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body  # type: ignore[no-any-return]


def test_auth_and_openai_shaped_errors(api: Api) -> None:
    _error(api.call("GET", "/corpora", None), 401)
    _error(api.call("GET", "/corpora", "tenant"), 403)
    _error(api.call("POST", "/corpora", "tenant", json={"name": "x"}), 403)
    assert _error(api.call("POST", "/corpora", json={}), 400)["param"] == "name"
    assert _error(api.call("POST", "/corpora", json={"name": "kb", "colour": 1}), 400)["param"] == "colour"
    assert _error(api.call("GET", "/corpora/nope"), 404)["code"] == "corpus_not_found"
    assert (
        _error(api.call("POST", "/corpora/nope/query", json={"query": "x"}), 404)["code"]
        == "corpus_not_found"
    )
    r = api.call("POST", "/corpora/nope/query", json={"query": ""})
    assert _error(r, 400)["param"] == "query"


def test_ingest_query_and_concurrent_queries_during_alias_swaps(api: Api) -> None:
    r = api.call("POST", "/corpora", json={"name": "kb", "chunk_size": 128, "chunk_overlap": 16})
    assert r.status_code == 201, r.text
    docs = [json.loads(line) for line in (KB / "documents.jsonl").read_text().splitlines()]
    r = api.call("POST", "/corpora/kb/documents", json={"documents": docs})
    assert r.status_code == 200, r.text
    assert r.json()["chunks_embedded"] == 200 and r.json()["version"] == 1
    bad = api.call("POST", "/corpora/kb/documents", json={"documents": [{"id": 3, "text": "x"}]})
    assert _error(bad, 400)["param"] == "id"
    r = api.call(
        "POST", "/corpora/kb/query", json={"query": "Who first spotted the planet Oberis?", "top_k": 3}
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.json()["data"][0]["document_id"] == "planet-oberis-discovery"
    r = api.call(
        "POST", "/corpora/kb/versions", json={"dimensions": 64, "chunk_size": 16, "chunk_overlap": 4}
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["status"] == "ready"
    assert (
        _error(api.call("PUT", "/corpora/kb/aliases/production", json={"version": 7}), 404)["param"]
        == "version"
    )

    def ask(q: str, **ref: Any) -> dict[str, Any]:
        r = api.call("POST", "/corpora/kb/query", json={"query": q, "top_k": 5, **ref})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    expected = {(q, v): ask(q, version=v)["data"] for q in QUERIES for v in (1, 2)}
    assert all(expected[(q, 1)] != expected[(q, 2)] for q in QUERIES)  # the versions answer differently
    stop = threading.Event()
    answers: list[tuple[str, dict[str, Any]]] = []
    failures: list[str] = []

    def client(i: int) -> None:
        with httpx.Client(base_url=api.srv.url, timeout=60) as http:
            n = i
            while not stop.is_set():
                q = QUERIES[n % len(QUERIES)]
                n += 1
                r = http.post("/admin/rag/corpora/kb/query", json={"query": q, "top_k": 5},
                              headers={"authorization": f"Bearer {api.admin}"})  # fmt: skip
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    answers.append((q, r.json()))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    swaps = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        r = api.call("PUT", "/corpora/kb/aliases/production", json={"version": 2 if swaps % 2 == 0 else 1})
        assert r.status_code == 200, r.text
        swaps += 1
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(60)
    assert not failures, failures[:3]
    seen = {a["version"] for _, a in answers}
    assert seen == {1, 2} and swaps >= 10 and len(answers) >= 100
    for q, a in answers:  # every answer is wholly one version's: exactly that version's own answer
        assert a["data"] == expected[(q, a["version"])]
    r = api.call("GET", "/corpora/kb")
    assert r.json()["aliases"]["production"] in (1, 2) and len(r.json()["versions"]) == 2
    print(f"\n{len(answers)} queries by 20 clients across {swaps} alias swaps, all succeeded")
