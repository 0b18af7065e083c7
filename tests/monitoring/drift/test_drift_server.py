"""End to end with the real embedder (slow: loads the packaged MiniLM and lingua): chat requests to a
real ``modelyard serve`` through the official ``openai`` client are logged, consumed by the periodic
task ``drift.consume`` in the server, and a monitor run over the admin API finds the topic change,
flags the French prompt and the 50x long one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from drift_stream import AFTER, BEFORE, window
from modelyard.monitoring.drift.store import DriftStore
from modelyard.store.db import create_db_engine
from servers import MockUpstream, RemoteServer, remote_config

pytestmark = pytest.mark.slow
FRENCH = "Bonjour, je voudrais annuler ma commande de demain matin, merci beaucoup pour votre aide."


@pytest.fixture(scope="module")
def served(
    mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RemoteServer, str]]:
    tmp: Path = tmp_path_factory.mktemp("drift-serve")
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    config = remote_config(mock_upstream.url, database_url=db)
    config["embedders"] = []
    config["monitoring"] = {"drift": {"enabled": True, "sample_rate": 1.0, "interval_s": 0.5,
                                      "monitor_every_s": 3600, "cpu_share": 1.0}}  # fmt: skip
    srv = RemoteServer(tmp, config)
    try:
        yield srv, db
    finally:
        srv.close()


def _send(client: openai.OpenAI, texts: list[str]) -> None:
    for text in texts:
        client.chat.completions.create(model="remote-chat", messages=[{"role": "user", "content": text}])


def _wait_for(db: str, n: int, timeout_s: float = 120.0) -> None:
    engine = create_db_engine(db)
    try:
        deadline = time.monotonic() + timeout_s
        while DriftStore(engine).count_samples() < n:
            assert time.monotonic() < deadline, (
                f"the consumer stored {DriftStore(engine).count_samples()} of {n}"
            )
            time.sleep(0.5)
    finally:
        engine.dispose()


def test_requests_are_consumed_and_the_topic_change_is_found(served: tuple[RemoteServer, str]) -> None:
    srv, db = served
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=30)
    rng = np.random.default_rng(0)
    t0 = datetime.now(UTC)
    _send(client, window(120, BEFORE, rng))
    t1 = datetime.now(UTC)
    time.sleep(1.0)
    current = window(80, AFTER, rng)
    current[3] = " ".join([current[3]] * 50)
    current[4] = FRENCH
    _send(client, current)
    _wait_for(db, 200)

    def admin(method: str, path: str, **kw: object) -> httpx.Response:
        return httpx.request(method, srv.url + path, timeout=120, **kw)  # type: ignore[arg-type]

    last = f"{int((datetime.now(UTC) - t1).total_seconds())}s"
    spec = {"id": "change", "scope": {"model": "remote-chat"},
            "baseline": {"start": t0.isoformat(), "end": t1.isoformat()}, "current": {"last": last},
            "methods": ["domain_classifier", "mmd", "centroid"], "expected_languages": ["en"], "min_samples": 30}  # fmt: skip
    assert admin("POST", "/admin/drift/monitors", json=spec).status_code == 201
    run = admin("POST", "/admin/drift/monitors/change/run").json()
    res = run["result"]
    assert run["status"] == "drift", res
    assert (res["n_baseline"], res["n_current"]) == (120, 80)
    assert res["methods"]["domain_classifier"]["score"] > 0.8
    assert res["outliers"]["language"] == 1 and res["outliers"]["long"] >= 1
    assert res["outliers"]["languages"].get("fr") == 1
    assert res["templates"]["unseen_rate"] > 0.3
