"""Metric values after recorded outcomes, engine metrics under vLLM's names, bounded labels."""

from __future__ import annotations

from modelyard.monitoring.metrics import EngineCollector, Metrics, Outcome, exported_names
from modelyard.monitoring.top import parse

ENGINE = {
    "num_running": 2,
    "num_waiting": 5,
    "kv_cache_usage": 0.25,
    "num_kv_blocks": 64,
    "prefix_cache_queries": 100,
    "prefix_cache_hits": 40,
    "prompt_tokens_total": 1000,
    "generation_tokens_total": 300,
    "num_preemptions": 1,
    "num_steps": 50,
}


def metrics() -> Metrics:
    m = Metrics()
    m.registry.register(EngineCollector(lambda: [("smol", ENGINE), ("remote", {"base_url": "x"})]))
    return m


def value(m: Metrics, name: str, **labels: str) -> float:
    return parse(m.exposition().decode()).get((name, tuple(sorted(labels.items()))), 0.0)


def test_outcomes_are_counted_once_each() -> None:
    m = metrics()
    m.record(
        Outcome(
            "smol",
            "t1",
            "chat/completions",
            200,
            engine=True,
            finish_reasons=["length", "stop"],
            prompt_tokens=7,
            completion_tokens=12,
            queue_s=0.001,
            ttft_s=0.05,
            itl_s=[0.01, 0.02],
            e2e_s=0.2,
            decode_s=0.1,
        )
    )
    m.record(
        Outcome(
            "smol", "t1", "chat/completions", 429, cause="rate_limit", rejection="rate_limit", e2e_s=0.001
        )
    )
    m.record(Outcome("smol", "t2", "chat/completions", 499, disconnected=True, cause=None, e2e_s=1.0))
    lab = {"model": "smol", "tenant": "t1"}
    assert value(m, "modelyard_requests_total", **lab, endpoint="chat/completions", status="200") == 1
    assert value(m, "modelyard_requests_total", **lab, endpoint="chat/completions", status="429") == 1
    assert value(m, "modelyard_request_finish_reason_total", **lab, finish_reason="length") == 1
    assert value(m, "modelyard_prompt_tokens_total", **lab) == 7
    assert value(m, "modelyard_generation_tokens_total", **lab) == 12
    assert value(m, "modelyard_inter_token_latency_seconds_count", **lab) == 2
    assert value(m, "modelyard_inter_token_latency_seconds_sum", **lab) == 0.03
    assert value(m, "modelyard_request_generation_tokens_per_second_sum", **lab) == 120
    assert value(m, "modelyard_request_rejections_total", **lab, reason="rate_limit") == 1
    assert value(m, "modelyard_request_failures_total", **lab, cause="rate_limit") == 1
    assert (
        value(m, "modelyard_client_disconnects_total", model="smol", tenant="t2", endpoint="chat/completions")
        == 1
    )
    assert value(m, "modelyard_request_failures_total", model="smol", tenant="t2", cause="disconnect") == 0
    # engine-served requests also land in vLLM's histograms, by model_name only
    assert value(m, "vllm:time_to_first_token_seconds_count", model_name="smol") == 1
    assert value(m, "vllm:e2e_request_latency_seconds_count", model_name="smol") == 1


def test_engine_metrics_use_vllm_names_at_scrape_time() -> None:
    m = metrics()
    assert value(m, "vllm:num_requests_running", model_name="smol") == 2
    assert value(m, "vllm:num_requests_waiting", model_name="smol") == 5
    assert value(m, "vllm:kv_cache_usage_perc", model_name="smol") == 0.25
    assert value(m, "vllm:prefix_cache_hits_total", model_name="smol") == 40
    assert value(m, "vllm:prefix_cache_queries_total", model_name="smol") == 100
    assert value(m, "vllm:prompt_tokens_total", model_name="smol") == 1000
    assert value(m, "vllm:generation_tokens_total", model_name="smol") == 300
    ENGINE["num_running"] = 3
    try:
        assert value(m, "vllm:num_requests_running", model_name="smol") == 3  # read live, not cached
    finally:
        ENGINE["num_running"] = 2
    assert not any(("model_name", "remote") in k[1] for k in parse(m.exposition().decode()))


def test_every_architecture_name_is_exported() -> None:
    names = exported_names(metrics())
    for n in (
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries",
        "vllm:prefix_cache_hits",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
    ):
        assert n in names, n


def test_engine_queue_time_histogram_under_the_vllm_name() -> None:
    from modelyard.engine.request import QUEUE_TIME_BUCKETS

    counts = [0] * (len(QUEUE_TIME_BUCKETS) + 1)
    counts[0], counts[3], counts[-1] = 2, 1, 1  # <= 0.3 s twice, one in (0.8, 1.0], one past the last edge
    m = Metrics()
    m.registry.register(
        EngineCollector(lambda: [("smol", {**ENGINE, "queue_time_counts": counts, "queue_time_sum": 9000.5})])
    )
    name = "vllm:request_queue_time_seconds"
    assert value(m, f"{name}_bucket", le="0.3", model_name="smol") == 2
    assert value(m, f"{name}_bucket", le="1.0", model_name="smol") == 3
    assert value(m, f"{name}_bucket", le="+Inf", model_name="smol") == 4
    assert value(m, f"{name}_count", model_name="smol") == 4
    assert value(m, f"{name}_sum", model_name="smol") == 9000.5
