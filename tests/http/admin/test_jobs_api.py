"""``/admin/jobs`` on the real server (tenancy on, jobs run in process): a tenant key sees and cancels
only its tenant's jobs, a system admin sees all; show returns state, progress, result and logs; and
``modelyard jobs`` talks to the same routes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.jobs.store import JobStore
from servers import MockUpstream, RemoteServer
from tenancy_support import bootstrap_admin, tenancy_config

TESTS = Path(__file__).resolve().parents[2]
SRC = TESTS.parent / "src"


class World:
    def __init__(self, srv: RemoteServer, keys: dict[str, str], jobs: dict[str, str]) -> None:
        self.srv, self.keys, self.jobs = srv, keys, jobs

    def call(self, method: str, path: str, label: str | None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[label]}"} if label else {}
        return httpx.request(method, self.srv.url + path, headers=headers, timeout=15, **kw)

    def wait(self, job: str, *states: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (body := self.call("GET", f"/admin/jobs/{self.jobs[job]}", "system").json())[
            "state"
        ] not in states:
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        return body


@pytest.fixture(scope="module")
def world(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("jobs-api")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    keys = {"system": bootstrap_admin(db)}
    store = JobStore(db)  # jobs recorded before the server starts are adopted and run by it
    jobs = {
        "acme-echo": store.create("test.echo", {"who": "acme"}, tenant="acme", created_by="test").id,
        "acme-long": store.create("test.until_cancelled", {}, tenant="acme", created_by="test").id,
        "globex-steps": store.create("test.steps", {"n": 5}, tenant="globex", created_by="test").id,
        "system-echo": store.create("test.echo", {"who": "system"}, tenant=None, created_by="test").id,
    }
    store.close()
    config = tenancy_config(mock_upstream.url, db)
    config.update(embedders=[], jobs={"kinds": ["job_kinds:KINDS"], "heartbeat_s": 0.2, "concurrency": 4})
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS)])
    try:
        srv = RemoteServer(tmp, config)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    w = World(srv, keys, jobs)
    try:
        for tenant in ("acme", "globex"):
            assert w.call("POST", "/admin/tenants", "system", json={"id": tenant}).status_code == 201
        for label, tenant, scopes in [
            ("acme-admin", "acme", ["admin"]),
            ("acme-read", "acme", ["read"]),
            ("acme-inference", "acme", ["inference"]),
            ("globex-admin", "globex", ["admin"]),
        ]:
            r = w.call("POST", "/admin/keys", "system", json={"tenant": tenant, "scopes": scopes})
            assert r.status_code == 201, r.text
            keys[label] = r.json()["key"]
        yield w
    finally:
        srv.close()


def test_jobs_run_in_the_server_and_show_their_result(world: World) -> None:
    body = world.wait("acme-echo", "succeeded", "failed")
    assert body["state"] == "succeeded" and body["result"]["echo"] == {"who": "acme"}
    assert body["logs"] == ["echo for tenant acme"] and body["tenant"] == "acme"
    steps = world.wait("globex-steps", "succeeded")
    assert steps["progress"] == {"done": 5, "total": 5, "message": "step 5"}


def test_list_is_scoped_to_the_callers_tenant(world: World) -> None:
    def ids(label: str, query: str = "") -> set[str]:
        r = world.call("GET", "/admin/jobs" + query, label)
        assert r.status_code == 200, r.text
        return {j["id"] for j in r.json()["data"]}

    j = world.jobs
    assert ids("system") >= set(j.values())
    assert ids("system", "?tenant=acme") == {j["acme-echo"], j["acme-long"]}
    assert ids("acme-admin") == ids("acme-read") == {j["acme-echo"], j["acme-long"]}
    assert ids("globex-admin") == {j["globex-steps"]}
    assert world.call("GET", "/admin/jobs?tenant=acme", "globex-admin").status_code == 404
    assert world.call("GET", "/admin/jobs", "acme-inference").status_code == 403
    assert world.call("GET", "/admin/jobs", None).status_code == 401
    r = world.call("GET", "/admin/jobs?state=nope", "system")
    assert r.status_code == 400 and r.json()["error"]["param"] == "state"
    world.wait("system-echo", "succeeded")
    assert ids("system", "?state=succeeded&kind=test.echo") == {j["acme-echo"], j["system-echo"]}


def test_show_and_cancel_answer_404_across_tenants(world: World) -> None:
    j = world.jobs
    for label, job in [
        ("globex-admin", "acme-echo"),
        ("acme-admin", "system-echo"),
        ("acme-read", "globex-steps"),
    ]:
        for method, path in [("GET", f"/admin/jobs/{j[job]}"), ("POST", f"/admin/jobs/{j[job]}/cancel")]:
            r = world.call(method, path, label)
            assert r.status_code == 404, (label, job, r.text)
            assert "acme" not in r.text or job != "acme-echo"
    r = world.call("GET", "/admin/jobs/job_missing", "system")
    assert r.status_code == 404 and r.json()["error"]["param"] == "job_id"
    assert world.call("GET", f"/admin/jobs/{j['acme-echo']}", "acme-read").status_code == 200


def test_tenant_admin_cancels_its_running_job(world: World) -> None:
    world.wait("acme-long", "running")
    job = world.jobs["acme-long"]
    assert world.call("POST", f"/admin/jobs/{job}/cancel", "acme-read").status_code == 403
    r = world.call("POST", f"/admin/jobs/{job}/cancel", "acme-admin")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    body = world.wait("acme-long", "cancelled", "succeeded", "failed")
    assert body["state"] == "cancelled" and body["result"]["stopped_after"] > 0


def test_jobs_cli_uses_the_api(world: World) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "MODELYARD_API_KEY": world.keys["globex-admin"]}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelyard.cli", "jobs", *args, "--url", world.srv.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert world.jobs["globex-steps"] in listed.stdout and world.jobs["acme-echo"] not in listed.stdout
    shown = cli("show", world.jobs["globex-steps"])
    assert shown.returncode == 0 and '"state": "succeeded"' in shown.stdout
    denied = cli("cancel", world.jobs["acme-echo"])
    assert denied.returncode == 1 and "404" in denied.stderr
