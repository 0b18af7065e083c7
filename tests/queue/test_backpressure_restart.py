"""Admission (bounded queue, 503 + Retry-After), scale from zero, and a Redis restart under live processes.

Runs on a private ``redis-server`` (started here on a free port) so that restarting it disturbs
nobody else; the test fails if ``redis-server`` is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from queue_helpers import Cluster

from servers import free_port, stop_process

pytestmark = pytest.mark.redis


class PrivateRedis:
    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        self.exe, self.tmp, self.port = exe, tmp, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path_factory.mktemp("redis"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def cluster(
    private_redis: PrivateRedis, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("bp"),
        tiny_dir,
        workers=0,
        redis_url=private_redis.url,
        max_queued=3,
        retry_after_s=2,
    )
    yield c
    c.close()


def post(cluster: Cluster, content: str, **kw: Any) -> httpx.Response:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
        "temperature": 0,
    }
    return httpx.post(f"{cluster.gateway.url}/v1/chat/completions", json={**body, **kw}, timeout=60)


def gateway_metric(cluster: Cluster, sample: str, **labels: str) -> float | None:
    """One sample of model ``tiny`` from the gateway's ``/metrics`` (None when absent)."""
    text = httpx.get(f"{cluster.gateway.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels.get("model") == "tiny" and labels.items() <= s.labels.items():
                return float(s.value)
    return None


def test_full_queue_answers_503_with_retry_after_then_workers_drain_it(cluster: Cluster) -> None:
    results: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(post(cluster, f"queued {i}"))) for i in range(3)
    ]
    for t in threads:
        t.start()
    r = redis.Redis.from_url(cluster.redis_url)
    deadline = time.monotonic() + 20
    while r.xlen(f"{cluster.prefix}:work:tiny") < 3:
        assert time.monotonic() < deadline, "requests were not queued"
        time.sleep(0.05)
    while gateway_metric(cluster, "modelyard_queue_depth") != 3:  # polled every heartbeat
        assert time.monotonic() < deadline, "the gateway's queue depth gauge did not reach 3"
        time.sleep(0.1)
    over = post(cluster, "one too many")
    assert over.status_code == 503, over.text
    assert over.headers["retry-after"] == "2"
    assert over.json()["error"]["code"] == "queue_full"
    cluster.start_worker("w0")  # scale from zero: the queued requests are served
    cluster.wait_ready("w0")
    for t in threads:
        t.join(timeout=60)
    assert [x.status_code for x in results] == [200, 200, 200]
    assert all(x.json()["usage"]["completion_tokens"] > 0 for x in results)
    time.sleep(1.0)  # a few queue polls
    stats = httpx.get(f"{cluster.gateway.url}/stats").json()
    backend = next(d["backend"] for d in stats["deployments"] if d["model"] == "tiny")
    assert backend["rejected_queue_full"] == 1 and backend["queue_time_p99_s"] > 0
    assert backend["workers"] == ["w0"] and backend["queue_depth"] == 0
    # the gateway's own /metrics: one queue-wait sample per served request, each waited for the
    # worker to start (seconds), and the depth gauge back at 0
    assert gateway_metric(cluster, "modelyard_queue_wait_seconds_count") == 3
    assert gateway_metric(cluster, "modelyard_queue_wait_seconds_sum") > 3 * 0.3
    assert gateway_metric(cluster, "modelyard_queue_wait_seconds_bucket", le="0.005") == 0
    assert gateway_metric(cluster, "modelyard_queue_depth") == 0


def test_redis_restart_recovers_without_restarting_processes(
    cluster: Cluster, private_redis: PrivateRedis
) -> None:
    if "w0" not in cluster.workers:
        cluster.start_worker("w0")
        cluster.wait_ready("w0")
    assert post(cluster, "before").status_code == 200
    worker_pid, gateway_pid = cluster.workers["w0"].pid, cluster.gateway.proc.pid
    private_redis.stop()
    down = post(cluster, "while down")
    assert down.status_code == 503, down.text  # fails fast, no hang
    private_redis.start()  # empty: streams and consumer groups are gone
    deadline = time.monotonic() + 30
    while True:
        resp = post(cluster, "after")
        if resp.status_code == 200:
            break
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.5)
    assert resp.json()["usage"]["completion_tokens"] > 0
    assert cluster.workers["w0"].poll() is None and cluster.workers["w0"].pid == worker_pid
    assert cluster.gateway.proc.poll() is None and cluster.gateway.proc.pid == gateway_pid
