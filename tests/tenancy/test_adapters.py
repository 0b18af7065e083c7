"""Private LoRA adapters on the built-in engine (a tiny random Llama served by ``modelyard serve``):
each tenant's adapter is loaded on first use, batched with other tenants' adapters (concurrent
outputs equal each alone), changes the output, and is usable only by its tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from engine.helpers import write_tiny_llama
from servers import RemoteServer
from tenancy_support import tiny_tenancy_server

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on recent transformers


def write_adapter(base: Path, out: Path, *, seed: int) -> Path:
    """A PEFT adapter folder with random (non-zero) A and B, written by peft itself."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.5)
    peft_model.save_pretrained(out)
    return out


class Served:
    def __init__(self, srv: RemoteServer, keys: dict[str, str]) -> None:
        self.srv, self.keys = srv, keys

    async def complete(self, client: httpx.AsyncClient, who: str, model: str) -> httpx.Response:
        body = {"model": model, "prompt": [5, 6, 7, 8, 9], "max_tokens": 8, "temperature": 0}
        return await client.post(
            self.srv.url + "/v1/completions", json=body, headers={"authorization": f"Bearer {self.keys[who]}"}
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("adapters")
    base = write_tiny_llama(tmp / "tiny")
    srv, admin = tiny_tenancy_server(tmp, base)
    h = {"authorization": f"Bearer {admin}"}
    keys = {}
    for i, tenant in enumerate(("acme", "globex")):
        httpx.post(
            srv.url + "/admin/tenants", headers=h, json={"id": tenant, "models": ["tiny"]}
        ).raise_for_status()
        keys[tenant] = httpx.post(srv.url + "/admin/keys", headers=h, json={"tenant": tenant}).json()["key"]
        path = write_adapter(base, tmp / f"{tenant}-lora", seed=10 + i)
        r = httpx.post(
            srv.url + "/admin/adapters",
            headers={"authorization": f"Bearer {keys[tenant]}"},
            json={"base_model": "tiny", "name": "support", "path": str(path)},
        )
        assert r.status_code == 403  # an inference key cannot register adapters
        r = httpx.post(
            srv.url + "/admin/adapters",
            headers=h,
            json={"tenant": tenant, "base_model": "tiny", "name": "support", "path": str(path)},
        )
        assert r.status_code == 201, r.text
    yield Served(srv, keys)
    srv.close()


async def test_adapters_are_private_batched_and_change_the_output(served: Served) -> None:
    async with httpx.AsyncClient(timeout=60) as c:
        alone = {}
        for who, model in (("acme", "tiny"), ("acme", "tiny:support"), ("globex", "tiny:support")):
            r = await served.complete(c, who, model)
            assert r.status_code == 200, r.text
            alone[(who, model)] = r.json()["choices"][0]["text"]
        # same name, different tenants: different adapters; both differ from the base model
        assert len(set(alone.values())) == 3
        together = await asyncio.gather(*(served.complete(c, w, m) for (w, m) in list(alone) * 3))
        for (w, m), r in zip(list(alone) * 3, together, strict=True):
            assert r.json()["choices"][0]["text"] == alone[(w, m)]
        listed = (
            await c.get(
                served.srv.url + "/v1/models", headers={"authorization": f"Bearer {served.keys['acme']}"}
            )
        ).json()
        assert [m["id"] for m in listed["data"]] == ["tiny", "tiny:support"]
        r = await served.complete(c, "acme", "tiny:nope")
        assert r.status_code == 404
