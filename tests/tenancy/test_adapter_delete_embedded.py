"""Deleting an adapter on an embedded ``modelyard serve`` (the engine in the server process): the
DELETE unloads it from the engine at once, removes its stored copy, the next request is a 404, and
uploading the same name again with other weights serves the new weights (not the old load, nor the
old prefix-cache blocks)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.helpers import write_tiny_llama
from servers import RemoteServer
from tenancy.test_adapters import write_adapter
from tenancy_support import tiny_tenancy_server

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on recent transformers
BODY = {"model": "tiny:support", "prompt": [5, 6, 7, 8, 9], "max_tokens": 8, "temperature": 0}


def archive(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="lora")
    return buf.getvalue()


class Embedded:
    def __init__(self, srv: RemoteServer, key: str, loras: dict[str, Path]) -> None:
        self.srv, self.loras = srv, loras
        self.headers = {"authorization": f"Bearer {key}"}

    def post(self, path: str, **kw: object) -> httpx.Response:
        return httpx.post(self.srv.url + path, headers=self.headers, timeout=60, **kw)  # type: ignore[arg-type]

    def upload(self, name: str, lora: str) -> httpx.Response:
        return self.post(
            f"/admin/adapters/upload?base_model=tiny&name={name}", content=archive(self.loras[lora])
        )

    def text(self, model: str) -> str:
        r = self.post("/v1/completions", json={**BODY, "model": model})
        assert r.status_code == 200, r.text
        return str(r.json()["choices"][0]["text"])


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    tmp = tmp_path_factory.mktemp("delete")
    base = write_tiny_llama(tmp / "tiny")
    loras = {k: write_adapter(base, tmp / k, seed=s) for k, s in (("old", 21), ("new", 22))}
    srv, admin = tiny_tenancy_server(tmp, base)
    h = {"authorization": f"Bearer {admin}"}
    httpx.post(
        srv.url + "/admin/tenants", headers=h, json={"id": "acme", "models": ["tiny"]}
    ).raise_for_status()
    key = httpx.post(
        srv.url + "/admin/keys", headers=h, json={"tenant": "acme", "scopes": ["admin", "inference"]}
    )
    yield Embedded(srv, key.json()["key"], loras)
    srv.close()


def test_delete_unloads_and_a_recreated_name_serves_the_new_weights(embedded: Embedded) -> None:
    e = embedded
    assert e.upload("probe", "new").status_code == 201
    new_text = e.text("tiny:probe")  # the new weights on a cold prefix cache
    assert e.upload("support", "old").status_code == 201
    old_text = e.text("tiny:support")
    assert old_text != new_text != e.text("tiny")

    listed = httpx.get(e.srv.url + "/admin/adapters", headers=e.headers).json()["data"]
    assert {a["id"] for a in listed} == {"tiny:probe", "tiny:support"}
    stored = sorted((e.srv.config_path.parent / "data" / "adapters" / "acme" / "tiny" / "support").iterdir())
    assert len(stored) == 1
    r = httpx.delete(e.srv.url + "/admin/adapters/tiny:support", headers=e.headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] is True and r.json()["unloaded"] is True  # nothing was using it
    assert not stored[0].exists()
    r = e.post("/v1/completions", json=BODY)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"

    assert e.upload("support", "new").status_code == 201  # same name, other weights
    assert e.text("tiny:support") == new_text
