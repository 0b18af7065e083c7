"""A full request-log buffer never slows or fails requests: records are dropped and counted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from servers import MockUpstream, RemoteServer, remote_config


@pytest.fixture(scope="module")
def tiny_buffer(
    mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RemoteServer]:
    config = remote_config(mock_upstream.url)
    config["embedders"] = []
    config["monitoring"] = {"request_log": {"buffer_size": 1, "batch_size": 100, "flush_interval_s": 600}}
    srv = RemoteServer(tmp_path_factory.mktemp("drops"), config)
    yield srv
    srv.close()


def test_overflow_is_dropped_and_counted(tiny_buffer: RemoteServer) -> None:
    for i in range(5):
        out = tiny_buffer.client.chat.completions.create(
            model="remote-chat", messages=[{"role": "user", "content": f"hello {i}"}]
        )
        assert out.choices[0].message.content == f"echo: hello {i}"
    metrics = httpx.get(f"{tiny_buffer.url}/metrics").text
    assert "modelyard_request_log_dropped_total 4.0" in metrics
    assert "modelyard_request_log_written_total 0.0" in metrics  # the one buffered record waits for its flush
