"""``/admin/drift/monitors`` on a real ``modelyard serve`` with tenancy (SQLite): bad monitors are 4xx
in the OpenAI error shape naming the field; tenants see and run only their own monitors; a run over an
empty window says insufficient data, over stored samples it finds the drift; the report renders; the
gauges appear on /metrics without prompt text. Samples are written straight into the server's
database with the hashing embedder, so no model loads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from drift_stream import AFTER, BEFORE, HashingEmbedder, window
from modelyard.monitoring.drift.fingerprints import canonical, fingerprint
from modelyard.monitoring.drift.store import DriftStore, Sample
from modelyard.monitoring.drift.templates import TemplateMiner
from modelyard.store.db import create_db_engine
from servers import MockUpstream, RemoteServer
from tenancy_support import bootstrap_admin, tenancy_config

SECRET_PROMPT = "zebra-canary-9931 please"


class Admin:
    def __init__(self, srv: RemoteServer, keys: dict[str, str], db: str) -> None:
        self.srv, self.keys, self.db = srv, keys, db

    def call(self, method: str, path: str, who: str = "admin", **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.request(method, self.srv.url + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def admin(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    tmp: Path = tmp_path_factory.mktemp("drift-admin")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    keys = {"admin": bootstrap_admin(db)}
    config = tenancy_config(mock_upstream.url, db)
    config["embedders"] = []
    srv = RemoteServer(tmp, config)
    a = Admin(srv, keys, db)
    try:
        for tenant in ("acme", "globex"):
            r = a.call("POST", "/admin/tenants", json={"id": tenant, "models": ["remote-chat"]})
            assert r.status_code == 201, r.text
            for scope in ("admin", "read"):
                r = a.call("POST", "/admin/keys", json={"tenant": tenant, "scopes": [scope]})
                assert r.status_code == 201, r.text
                keys[f"{tenant}-{scope}"] = r.json()["key"]
        _store_samples(db)
        yield a
    finally:
        srv.close()


def _store_samples(db: str) -> None:
    """Baseline (days ago) from BEFORE and the last hour from AFTER for model chat / tenant acme."""
    engine = create_db_engine(db)
    store, emb, miner = DriftStore(engine), HashingEmbedder(), TemplateMiner()
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    samples = []
    for texts, start, span in (
        (window(200, BEFORE, rng), now - timedelta(days=2), timedelta(days=1)),
        (window(100, AFTER, rng) + [SECRET_PROMPT], now - timedelta(minutes=50), timedelta(minutes=40)),
    ):
        for i, (text, vec) in enumerate(zip(texts, emb.embed(texts), strict=True)):
            samples.append(
                Sample(
                    request_log_id=len(samples) + 1, created_at=start + span * (i / len(texts)), model="chat",
                    tenant="acme", prompt_version=None, fingerprint=fingerprint(text),
                    template_id=f"drain:{miner.add(canonical(text)).id}", n_tokens=len(text.split()),
                    language="en", odd_chars=False, embedder="hashing", embedding=vec,
                )
            )  # fmt: skip
    store.commit_samples(samples, {})
    engine.dispose()


def _error(r: httpx.Response, status: int, param: str | None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param, err


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"id": "x", "scope": {"project": "p"}}, "scope.project"),
        ({"id": "x", "current": {"last": "an hour"}}, "current.last"),
        ({"id": "x", "baseline": {"start": "2026-02-01", "end": "2026-01-01"}}, "baseline.end"),
        ({"id": "x", "methods": []}, "methods"),
        ({"id": "x", "thresholds": {"mmd_p": "small"}}, "thresholds.mmd_p"),
        ({"scope": {}}, "id"),
    ],
)
def test_bad_monitors_are_400_naming_the_field(admin: Admin, body: dict, param: str) -> None:  # type: ignore[type-arg]
    _error(admin.call("POST", "/admin/drift/monitors", json=body), 400, param)


def test_create_list_run_report_and_gauges(admin: Admin) -> None:
    spec = {"id": "acme-chat", "scope": {"model": "chat"}, "baseline": {"trailing": "3d"},
            "current": {"last": "1h"}, "methods": ["domain_classifier", "mmd", "centroid"], "min_samples": 30}  # fmt: skip
    r = admin.call("POST", "/admin/drift/monitors", "acme-admin", json=spec)
    assert r.status_code == 201, r.text
    assert r.json()["tenant"] == "acme" and r.json()["scope"] == {"model": "chat", "tenant": "acme"}
    _error(admin.call("POST", "/admin/drift/monitors", "acme-admin", json=spec), 409, None)
    bad = {**spec, "id": "steal", "scope": {"tenant": "globex"}}
    _error(admin.call("POST", "/admin/drift/monitors", "acme-admin", json=bad), 400, "scope.tenant")
    empty = {"id": "nobody", "scope": {"model": "nobody"}}
    assert admin.call("POST", "/admin/drift/monitors", json=empty).status_code == 201

    assert [m["id"] for m in admin.call("GET", "/admin/drift/monitors", "acme-read").json()["data"]] == [
        "acme-chat"
    ]
    assert admin.call("GET", "/admin/drift/monitors", "globex-admin").json()["data"] == []
    assert {m["id"] for m in admin.call("GET", "/admin/drift/monitors").json()["data"]} == {
        "acme-chat",
        "nobody",
    }
    _error(admin.call("GET", "/admin/drift/monitors/acme-chat", "globex-admin"), 404, "id")
    _error(admin.call("POST", "/admin/drift/monitors/acme-chat/run", "globex-admin"), 404, "id")
    assert admin.call("POST", "/admin/drift/monitors/acme-chat/run", "acme-read").status_code == 403
    assert admin.call("GET", "/admin/drift/monitors", None).status_code == 401

    run = admin.call("POST", "/admin/drift/monitors/nobody/run").json()
    assert run["status"] == "insufficient_data" and run["alert"] is False
    run = admin.call("POST", "/admin/drift/monitors/acme-chat/run", "acme-admin").json()
    assert run["status"] == "drift", run
    assert set(run["result"]["methods"]) == {"domain_classifier", "mmd", "centroid"}
    assert run["result"]["n_baseline"] == 200 and run["result"]["n_current"] == 101
    again = admin.call("POST", "/admin/drift/monitors/acme-chat/run", "acme-admin").json()
    assert again["alert"] is True
    runs = admin.call("GET", "/admin/drift/monitors/acme-chat/runs", "acme-read").json()["data"]
    assert [x["status"] for x in runs] == ["drift", "drift"]
    _error(admin.call("GET", "/admin/drift/monitors/acme-chat/runs?limit=0", "acme-read"), 400, "limit")

    doc = admin.call("GET", "/admin/drift/monitors/acme-chat/report", "acme-read").json()
    assert doc["version"] == 1 and len(doc["runs"]) == 2 and len(doc["projection"]["current"]) == 101
    page = admin.call("GET", "/admin/drift/monitors/acme-chat/report?format=html", "acme-read")
    assert page.status_code == 200 and page.text.count("data:image/png;base64,") == 4
    _error(admin.call("GET", "/admin/drift/monitors/acme-chat/report?format=pdf", "acme-read"), 400, "format")

    metrics = httpx.get(admin.srv.url + "/metrics", timeout=10).text
    assert 'modelyard_drift_alert{monitor="acme-chat"} 1.0' in metrics
    assert 'modelyard_drift_status{monitor="nobody",status="insufficient_data"} 1.0' in metrics
    assert 'modelyard_drift_score{method="domain_classifier",monitor="acme-chat"}' in metrics
    assert "modelyard_drift_unseen_template_rate" in metrics and SECRET_PROMPT not in metrics

    r = admin.call("DELETE", "/admin/drift/monitors/nobody")
    assert r.status_code == 200 and r.json()["deleted"] is True
    _error(admin.call("GET", "/admin/drift/monitors/nobody"), 404, "id")
