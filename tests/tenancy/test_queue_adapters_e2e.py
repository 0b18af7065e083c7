"""Private adapters end to end through the Redis queue with tenancy on: a ``modelyard serve`` gateway
(``queue.backend: redis``, keys required) and a ``modelyard worker`` subprocess. Tenant A registers an
adapter from a registry artifact and uses it through the official ``openai`` client (a greedy answer
that differs from the base model's; its usage record names the adapter and is priced as the base
model); tenant B gets 404 for it and does not see it in ``/v1/models``; deleting it unloads it from the
worker within a few heartbeats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from engine.helpers import write_tiny_llama
from modelyard.tenancy.store import TenancyStore
from servers import RemoteServer, stop_process
from tenancy.test_adapters import write_adapter
from tenancy_support import REDIS_URL, SECRET, bootstrap_admin, tenancy_config

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore::FutureWarning")]
PROMPT = [5, 6, 7, 8, 9, 10]
PRICE = {"prompt_per_1k": 2.0, "completion_per_1k": 4.0}


class Deployment:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.base = write_tiny_llama(tmp / "tiny")
        self.lora = write_adapter(self.base, tmp / "acme-lora", seed=7)
        self.db = f"sqlite:///{tmp / 'db.sqlite'}"
        self.admin = bootstrap_admin(self.db)
        self.prefix = f"mytest-{uuid.uuid4().hex[:8]}"
        cfg = tenancy_config("http://127.0.0.1:9", self.db, prices={"tiny": PRICE})
        cfg.update(
            data_dir=str(tmp / "data"),
            model_cache_dir=str(tmp / "models"),
            deployments=[],
            fallbacks={},
            embedders=[],
            local_models=[{"name": "tiny", "source": str(self.base)}],
            engine={
                "max_model_len": 128,
                "num_threads": 1,
                "dtype": "float32",
                "max_loras": 2,
                "max_lora_rank": 8,
            },
            queue={
                "backend": "redis",
                "redis_url": REDIS_URL,
                "key_prefix": self.prefix,
                "heartbeat_s": 0.3,
                "claim_idle_s": 1.5,
                "worker_ttl_s": 1.5,
                "reply_timeout_s": 60,
                "queue_timeout_s": 60,
            },
        )
        config_path = tmp / "worker.yaml"
        config_path.write_text(yaml.safe_dump(cfg))
        ready = tmp / "w0.ready"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("MODELYARD_CONFIG", None)
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard.cli",
                "worker",
                "--config",
                str(config_path),
                "--worker-id",
                "w0",
            ]
            + ["--ready-file", str(ready), "--log-level", "info"],
            stdout=(tmp / "w0.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
        (tmp / "gateway").mkdir()
        self.gateway = RemoteServer(tmp / "gateway", cfg, ready_timeout_s=120)
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert self.worker.poll() is None and time.monotonic() < deadline, (tmp / "w0.log").read_text()
            time.sleep(0.1)
        self.keys: dict[str, str] = {}

    def call(self, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.gateway.url + path, headers={"authorization": f"Bearer {key}"}, timeout=30, **kw
        )

    def client(self, who: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.gateway.url}/v1", api_key=self.keys[who], max_retries=0, timeout=60
        )

    def worker_adapters(self) -> list[str]:
        r = redis.Redis.from_url(REDIS_URL)
        try:
            raw = r.get(f"{self.prefix}:worker:w0")
        finally:
            r.close()
        return list(json.loads(raw)["adapters"]) if raw else []

    def close(self) -> None:
        self.gateway.close()
        stop_process(self.worker)
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{self.prefix}:*"))
        if keys:
            r.delete(*keys)
        r.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("queue-adapters"))
    try:
        for tenant in ("acme", "globex"):
            r = d.call("POST", "/admin/tenants", d.admin, json={"id": tenant, "models": ["tiny"]})
            assert r.status_code == 201, r.text
            r = d.call(
                "POST", "/admin/keys", d.admin, json={"tenant": tenant, "scopes": ["admin", "inference"]}
            )
            d.keys[tenant] = r.json()["key"]
        # The adapter is a registry artifact owned by acme (the registry is a system admin's to write).
        r = d.call("POST", "/admin/models", d.admin, json={"name": "acme-lora", "owner": "acme"})
        assert r.status_code == 201, r.text
        version = {"artifact_uri": str(d.lora), "architecture": "llama", "context_length": 128}
        r = d.call("POST", "/admin/models/acme-lora/versions", d.admin, json=version)
        assert r.status_code == 201, r.text
        yield d
    finally:
        d.close()


def _complete(client: openai.OpenAI, model: str) -> Any:
    return client.completions.with_raw_response.create(
        model=model, prompt=PROMPT, max_tokens=8, temperature=0
    )


def test_private_adapter_through_the_redis_queue(deployment: Deployment) -> None:
    d = deployment
    body = {"base_model": "tiny", "name": "support", "artifact": "acme-lora:1"}
    # globex may not take acme's artifact: 404 like a version that does not exist
    for who, ref in (("globex", "acme-lora:1"), ("acme", "acme-lora:2")):
        r = d.call("POST", "/admin/adapters/from-registry", d.keys[who], json={**body, "artifact": ref})
        assert r.status_code == 404, r.text
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = d.call("POST", "/admin/adapters/from-registry", d.keys["acme"], json=body)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "tiny:support"

    acme, globex = d.client("acme"), d.client("globex")
    try:
        base = _complete(acme, "tiny").parse().choices[0].text
        raw = _complete(acme, "tiny:support")
        tuned = raw.parse()
        assert tuned.choices[0].text != base  # greedy: the adapter changes the answer
        assert _complete(acme, "tiny:support").parse().choices[0].text == tuned.choices[0].text
        with pytest.raises(openai.NotFoundError):
            _complete(globex, "tiny:support")
        assert [m.id for m in globex.models.list()] == ["tiny"]
        assert [m.id for m in acme.models.list()] == ["tiny", "tiny:support"]

        rid = raw.headers["x-request-id"]
        store = TenancyStore(d.db, SECRET.encode())
        try:
            deadline = time.monotonic() + 10
            while not (rows := [u for u in store.usage_rows("acme") if u["request_id"] == rid]):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            store.close()
        (usage,) = rows
        assert usage["adapter"] == "support" and usage["status"] == "ok"
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
            tuned.usage.prompt_tokens,  # type: ignore[union-attr]
            tuned.usage.completion_tokens,  # type: ignore[union-attr]
        )
        expected = usage["prompt_tokens"] / 1000 * 2.0 + usage["completion_tokens"] / 1000 * 4.0
        assert usage["cost"] == pytest.approx(expected)  # priced as its base model

        assert any(a.startswith("acme/support/") for a in d.worker_adapters())
        r = d.call("DELETE", "/admin/adapters/tiny:support", d.keys["acme"])
        assert r.status_code == 200 and r.json()["deleted"] is True
        deadline = time.monotonic() + 10
        while any(a.startswith("acme/support/") for a in d.worker_adapters()):
            assert time.monotonic() < deadline, "the worker kept the deleted adapter"
            time.sleep(0.1)
        with pytest.raises(openai.NotFoundError):
            _complete(acme, "tiny:support")
    finally:
        acme.close()
        globex.close()
