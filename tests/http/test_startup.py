"""Start-up: models load in the background; a loaded model answers while another still loads.

The SmolLM2 load is held by taking the GGUF conversion lock (``<cache>/.<sha256>.lock``) that a
second server sharing the cache would hold while converting: the server under test waits on it,
as it would in production, while its embedder loads and serves.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelyard.engine.loader import packaged_model_path, sha256_file
from servers import RemoteServer

SMOL = "smollm2-135m-instruct"
EMBEDDER = "all-minilm-l6-v2"


def _ready(server: RemoteServer) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{server.url}/ready", timeout=5)
    return r.status_code, r.json()


def _states(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["model"]: m for m in body["models"]}


@pytest.fixture(scope="module")
def held_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    tmp = tmp_path_factory.mktemp("startup")
    cache = tmp / "models"
    cache.mkdir()
    digest = sha256_file(packaged_model_path(SMOL))
    with open(cache / f".{digest}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # "another process is converting SmolLM2"
        config = {
            "model_cache_dir": str(cache),
            "embedders": [{"name": EMBEDDER}],
            "local_models": [
                {"name": SMOL, "source": f"packaged:{SMOL}"},
                {"name": "missing", "source": str(tmp / "no-such-model.gguf")},
            ],
        }
        srv = RemoteServer(tmp, config, wait_for="/health")
        deadline = time.monotonic() + 180
        # the embedder loaded and the missing model's load failed (they run concurrently, in no set order)
        while [_states(_ready(srv)[1])[m]["state"] for m in (EMBEDDER, "missing")] != ["ready", "failed"]:
            assert time.monotonic() < deadline, srv.log.read_text()[-3000:]
            time.sleep(0.2)
        yield srv
        srv.close()


def test_ready_lists_each_model_state_and_stays_503(held_server: RemoteServer) -> None:
    status, body = _ready(held_server)
    assert status == 503 and body["ready"] is False
    states = _states(body)
    assert states[EMBEDDER]["state"] == "ready" and states[EMBEDDER]["load_s"] > 0
    assert states[SMOL]["state"] == "loading" and states[SMOL]["error"] is None
    assert states["missing"]["state"] == "failed"
    assert "does not exist" in states["missing"]["error"]
    assert body["failed"] == {"missing#local": states["missing"]["error"]}
    assert body["deployments"] == {f"{EMBEDDER}#local": True, f"{SMOL}#local": False, "missing#local": False}
    time.sleep(0.3)
    assert _states(_ready(held_server)[1])[SMOL]["load_s"] > states[SMOL]["load_s"]  # the clock runs


def test_loaded_model_answers_while_another_loads(held_server: RemoteServer) -> None:
    out = held_server.client.embeddings.create(model=EMBEDDER, input=["first model up"])
    assert len(out.data[0].embedding) == 384


def test_loading_model_is_503_with_retry_after(held_server: RemoteServer) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        held_server.client.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "hi"}])
    err = info.value
    assert err.status_code == 503
    assert int(err.response.headers["retry-after"]) >= 1
    assert err.body == {
        "message": err.body["message"],  # type: ignore[index]
        "type": "server_error",
        "param": "model",
        "code": "model_loading",
    }
    assert "still loading" in err.body["message"]  # type: ignore[index]


def test_failed_model_is_503_without_retry_after(held_server: RemoteServer) -> None:
    r = httpx.post(
        f"{held_server.url}/v1/completions",
        json={"model": "missing", "prompt": "x", "max_tokens": 1},
        timeout=10,
    )
    assert r.status_code == 503 and "retry-after" not in r.headers
    error = r.json()["error"]
    assert error["code"] == "model_load_failed" and error["param"] == "model"
    assert "failed to load" in error["message"]


@pytest.mark.slow
def test_warm_start_of_the_packaged_models(tmp_path: Path) -> None:
    """A restart with every conversion cached reaches /ready well within a generous bound.

    The bound is for CI on a loaded 2-core machine; ``python -m bench.startup`` reports the figure.
    """
    config = {"model_cache_dir": str(Path.home() / ".cache" / "modelyard" / "models")}
    for sub in ("first", "warm"):
        (tmp_path / sub).mkdir()
    RemoteServer(tmp_path / "first", config, ready_timeout_s=600).close()  # converts if not cached yet
    start = time.monotonic()
    srv = RemoteServer(tmp_path / "warm", config, ready_timeout_s=120)
    try:
        elapsed = time.monotonic() - start
        status, body = _ready(srv)
        assert status == 200 and body["ready"] is True
        states = _states(body)
        assert set(states) == {SMOL, "gemma-3-270m", EMBEDDER}
        assert all(m["state"] == "ready" and 0 < m["load_s"] < elapsed for m in states.values())
        reply = srv.client.chat.completions.create(
            model=SMOL,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=32,
        )
        assert "Paris" in (reply.choices[0].message.content or "")
    finally:
        srv.close()
