"""The built-in engine's metrics under vLLM's names, and its request spans, on the real SmolLM2.

Slow: the server loads the packaged SmolLM2-135M-Instruct (converted weights cached in ~/.cache).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servers import RemoteServer

pytestmark = pytest.mark.slow
SMOL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    tmp = tmp_path_factory.mktemp("engine-metrics")
    config = {
        "local_models": [{"name": SMOL, "source": "packaged:smollm2-135m-instruct"}],
        "embedders": [],
        "model_cache_dir": str(Path.home() / ".cache" / "modelyard" / "models"),
        "engine": {"max_model_len": 1024},
        "monitoring": {"tracing": {"exporter": "file", "file_path": str(tmp / "spans.jsonl")}},
    }
    srv = RemoteServer(tmp, config, ready_timeout_s=600)
    srv.spans_path = tmp / "spans.jsonl"  # type: ignore[attr-defined]
    yield srv
    srv.close()


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_engine_metrics_and_spans(smol: RemoteServer) -> None:
    mn = frozenset({("model_name", SMOL)})
    before = samples(smol.url)
    prompt = "Count from one to twenty in words, separated by commas."
    stream = smol.client.chat.completions.create(
        model=SMOL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": "smol-1"},
    )
    usage = [c.usage for c in stream if c.usage][-1]
    smol.client.chat.completions.create(  # the same prompt again: its blocks come from the prefix cache
        model=SMOL, messages=[{"role": "user", "content": prompt}], max_tokens=4, temperature=0
    )
    after = samples(smol.url)

    def delta(name: str) -> float:
        return after.get((name, mn), 0.0) - before.get((name, mn), 0.0)

    assert delta("vllm:generation_tokens_total") == usage.completion_tokens + 4
    assert delta("vllm:prompt_tokens_total") > 0
    assert delta("vllm:prefix_cache_hits_total") > 0 and delta("vllm:prefix_cache_queries_total") > 0
    assert delta("vllm:time_to_first_token_seconds_count") == 1  # the stream; the plain answer has no chunks
    assert delta("vllm:e2e_request_latency_seconds_count") == 2
    assert delta("vllm:inter_token_latency_seconds_count") >= usage.completion_tokens - 2
    assert after[("vllm:num_requests_running", mn)] == 0 and 0 <= after[("vllm:kv_cache_usage_perc", mn)] <= 1

    deadline, root = time.monotonic() + 10, None
    while root is None and time.monotonic() < deadline:
        spans = (
            [json.loads(x) for x in smol.spans_path.read_text().splitlines()]
            if smol.spans_path.exists()
            else []
        )
        root = next((s for s in spans if s["attributes"].get("modelyard.request_id") == "smol-1"), None)
        time.sleep(0.1)
    assert root is not None
    assert root["attributes"]["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert root["attributes"]["gen_ai.usage.output_tokens"] == usage.completion_tokens
    children = {s["name"] for s in spans if s.get("parent_id") == root["context"]["span_id"]}
    assert children == {"queue", "prefill", "decode"}
