"""The real SmolLM2-135M-Instruct behind the Redis queue: gateway + one worker process (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_helpers import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture(scope="module")
def smol_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    settings = {
        "local_models": [{"name": "smol", "source": "packaged:smollm2-135m-instruct"}],
        "model_cache_dir": str(Path.home() / ".cache" / "modelyard" / "models"),
        "engine": {"max_model_len": 2048},
    }
    c = Cluster(tmp_path_factory.mktemp("smol"), None, workers=1, settings=settings, reply_timeout_s=60)
    yield c
    c.close()


def test_smollm2_answers_through_the_queue(smol_cluster: Cluster) -> None:
    client = smol_cluster.gateway.client
    resp = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=32,
    )
    assert "Paris" in (resp.choices[0].message.content or "")
    chunks = list(
        client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == resp.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
