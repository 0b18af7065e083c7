"""The per-request observer on its own: chunk parsing, token events, one finish, disconnects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelyard.errors import UpstreamError
from modelyard.gateway.pipeline import Gateway, StaticResolver
from modelyard.gateway.router import Router
from modelyard.monitoring.monitor import Monitor
from modelyard.monitoring.observer import Observation, ObservedStream
from modelyard.monitoring.top import parse
from modelyard.settings import Settings


def monitor(tmp_path: Path, **tracing: Any) -> Monitor:
    settings = Settings(
        local_models=[],
        embedders=[],
        data_dir=tmp_path,
        monitoring={
            "tracing": {"exporter": "file", "file_path": str(tmp_path / "s.jsonl"), **tracing},
            "request_log": {"enabled": False},
        },
    )
    router = Router(settings.router.policy, settings.circuit_breaker, ewma_alpha=0.2, fallbacks={})
    m = Monitor(settings, Gateway(router, StaticResolver(router), settings.limits))
    m.start()
    return m


def observe(m: Monitor, stream: bool = True) -> Observation:
    obs = m.observe(
        endpoint="chat/completions",
        model_ref="free text",
        request_id="r1",
        stream=stream,
        body={"model": "free text", "max_tokens": 5},
        state={},
        headers={},
    )
    assert isinstance(obs, Observation)
    return obs


def chunk(content: str | None = None, finish: str | None = None, index: int = 0) -> bytes:
    delta = {} if content is None else {"content": content}
    return orjson.dumps({"id": "c1", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]})


def spans(m: Monitor, tmp_path: Path) -> list[dict[str, Any]]:
    assert m.provider is not None
    m.provider.force_flush()
    return [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]


def value(m: Monitor, name: str, **labels: str) -> float:
    return parse(m.metrics.exposition().decode()).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_chunks_token_events_and_one_finish(tmp_path: Path) -> None:
    m = monitor(tmp_path, token_events_every=2, max_token_events=2, capture_content=True)
    obs = observe(m)
    for payload in (
        orjson.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        chunk("a"),
        chunk("b"),
        b"not json",
        chunk("c"),
        chunk("d"),
        chunk("e"),
        chunk(None, "length"),
    ):
        obs.chunk(payload)
    obs.finish_stream()
    obs.failed(UpstreamError("late"))  # ignored: the request already finished
    obs.disconnected()
    [root] = [s for s in spans(m, tmp_path) if s["name"] == "chat free text"]
    assert [e["attributes"] for e in root["events"]] == [
        {"gen_ai.token.index": 0, "gen_ai.token.text": "a"},
        {"gen_ai.token.index": 2, "gen_ai.token.text": "c"},
    ]
    assert root["attributes"]["gen_ai.usage.output_tokens"] == 5
    assert root["attributes"]["gen_ai.request.max_tokens"] == 5
    assert root["status"]["status_code"] == "UNSET"
    lab = {"model": "unknown", "tenant": "anonymous"}  # the raw model string never becomes a label
    assert value(m, "modelyard_requests_total", **lab, endpoint="chat/completions", status="200") == 1
    assert value(m, "modelyard_inter_token_latency_seconds_count", **lab) == 4
    assert value(m, "modelyard_request_finish_reason_total", **lab, finish_reason="length") == 1
    assert value(m, "modelyard_request_failures_total", **lab, cause="upstream") == 0
    await m.stop()


class _Handle:
    def __init__(self, payloads: list[bytes], fail: Exception | None = None) -> None:
        self._it = iter(payloads)
        self._fail = fail
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self  # type: ignore[return-value]

    async def __anext__(self) -> bytes:
        try:
            return next(self._it)
        except StopIteration:
            if self._fail is not None:
                raise self._fail from None
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("fail", "status"), [(None, "499"), (UpstreamError("gone"), "502")])
async def test_observed_stream_early_close_is_a_disconnect(
    tmp_path: Path, fail: Exception | None, status: str
) -> None:
    m = monitor(tmp_path)
    handle = _Handle([chunk("a"), chunk("b")], fail)
    stream = ObservedStream(handle, observe(m))
    got = [await stream.__anext__(), await stream.__anext__()]
    if fail is not None:
        with pytest.raises(UpstreamError):
            await stream.__anext__()
    await stream.aclose()
    assert handle.closed and len(got) == 2
    lab = {"model": "unknown", "tenant": "anonymous"}
    assert value(m, "modelyard_requests_total", **lab, endpoint="chat/completions", status=status) == 1
    assert value(m, "modelyard_client_disconnects_total", **lab, endpoint="chat/completions") == (
        fail is None
    )
    [root] = [s for s in spans(m, tmp_path) if s["name"] == "chat free text"]
    assert root["status"]["status_code"] == ("UNSET" if fail is None else "ERROR")
    await m.stop()


async def test_disabled_monitor_observes_nothing(tmp_path: Path) -> None:
    settings = Settings(local_models=[], embedders=[], data_dir=tmp_path, monitoring={"enabled": False})
    router = Router(settings.router.policy, settings.circuit_breaker, ewma_alpha=0.2, fallbacks={})
    m = Monitor(settings, Gateway(router, StaticResolver(router), settings.limits))
    m.start()
    obs = m.observe(
        endpoint="chat/completions",
        model_ref="x",
        request_id="r",
        stream=False,
        body={},
        state={},
        headers={},
    )
    obs.completed(b"{}")
    assert "modelyard_requests_total{" not in m.metrics.exposition().decode()
    await m.stop()


async def test_phase_spans_can_be_turned_off(tmp_path: Path) -> None:
    m = monitor(tmp_path, phase_spans=False)
    obs = observe(m)
    obs.chunk(chunk("a"))
    obs.finish_stream()
    assert [s["name"] for s in spans(m, tmp_path)] == ["chat free text"]
    await m.stop()
