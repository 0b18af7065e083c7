"""The worker's /health, /ready and /metrics endpoints over a real socket."""

from __future__ import annotations

import httpx

from modelyard.queue.base import QueueWaitHistogram
from modelyard.queue.worker_http import render_metrics, serve_http
from servers import free_port


async def test_ready_follows_state_and_metrics_use_vllm_names() -> None:
    state = {"ready": False}
    port = free_port()

    def metrics() -> bytes:
        stats = {"tiny": {"num_running": 2, "num_waiting": 3, "kv_cache_usage": 0.25}}
        wait = QueueWaitHistogram()
        for seconds in (0.002, 0.3, 7.0):
            wait.observe(seconds)
        return render_metrics("w1", stats, 4, 7, wait)

    server = await serve_http("127.0.0.1", port, ready=lambda: state["ready"], metrics=metrics)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/ready")).status_code == 503
            state["ready"] = True
            assert (await client.get("/ready")).json() == {"ready": True}
            text = (await client.get("/metrics")).text
            assert 'vllm:num_requests_waiting{model_name="tiny",worker="w1"} 3.0' in text
            assert 'vllm:kv_cache_usage_perc{model_name="tiny",worker="w1"} 0.25' in text
            assert 'modelyard_worker_served_total{worker="w1"} 7' in text
            assert 'vllm:request_queue_time_seconds_bucket{worker="w1",le="0.005"} 1' in text
            assert 'vllm:request_queue_time_seconds_bucket{worker="w1",le="0.5"} 2' in text
            assert 'vllm:request_queue_time_seconds_bucket{worker="w1",le="+Inf"} 3' in text
            assert 'vllm:request_queue_time_seconds_count{worker="w1"} 3' in text
            assert (await client.get("/nope")).status_code == 404
    finally:
        server.close()
        await server.wait_closed()
