"""The experiment layer in process, wrapping the real routing pipeline on the mock upstream:
assignment, overrides under the request's own fields, one exposure per request (stream and not), the
observer's ``assigned``, and assignment from an OpenFeature flag (in-memory provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from openfeature import api
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from modelyard.errors import ModelNotFound
from modelyard.experiments.layer import ExperimentBook, ExperimentLayer, ExposureWriter, apply_variant
from modelyard.experiments.records import Status, Variant
from modelyard.experiments.store import ExperimentStore
from modelyard.gateway.backends.base import Endpoint
from modelyard.gateway.backends.openai_compat import OpenAICompatBackend
from modelyard.gateway.pipeline import Gateway, StaticResolver
from modelyard.gateway.router import Router
from modelyard.monitoring.observer import NullObserver
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.registry import Registry
from modelyard.settings import CircuitBreakerSettings, LimitSettings, RemoteDeploymentSettings, RouterPolicy
from servers import MockUpstream


class Observer(NullObserver):
    """The null observer, remembering what the layer reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def assigned(self, experiment: str, variant: str) -> None:
        self.calls.append((experiment, variant))


@pytest.fixture
async def layer(
    registry: Registry, store: ExperimentStore, mock_upstream: MockUpstream
) -> AsyncIterator[ExperimentLayer]:
    """The layer on the real pipeline, whose deployments `model-a` and `model-b` are the mock upstream."""
    router = Router(RouterPolicy.WEIGHTED, CircuitBreakerSettings())
    backends = []
    for name in ("model-a", "model-b"):
        s = RemoteDeploymentSettings(model=name, base_url=f"{mock_upstream.url}/v1", upstream_model="mock")
        backend = OpenAICompatBackend(s, name)
        await backend.start()
        router.add(backend)
        backends.append(backend)
    gateway = Gateway(router, StaticResolver(router), LimitSettings())
    yield ExperimentLayer(gateway, ExperimentBook(registry, store), ExposureWriter(store))
    for backend in backends:
        await backend.close()


def _sent(mock_upstream: MockUpstream) -> dict[str, Any]:
    return httpx.get(f"{mock_upstream.url}/last/mock").json()  # type: ignore[no-any-return]


def _start(store: ExperimentStore, layer: ExperimentLayer, **extra: Any) -> None:
    spec = {
        "id": "e", "route": "chat", "unit": "user",
        "variants": [
            {"name": "a", "weight": 50, "model": "model-a", "params": {"temperature": 0.1}},
            {"name": "b", "weight": 50, "model": "model-b", "params": {"temperature": 0.9, "max_tokens": 5}},
        ],
        **extra,
    }  # fmt: skip
    store.create(spec, tenant=None)
    store.transition("e", Status.RUNNING)
    layer.book.refresh()


def _body(user: str | None, **extra: Any) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra}
    if user is not None:
        body["user"] = user
    return ChatCompletionRequest.model_validate(body), body


def test_request_fields_win_over_variant_overrides() -> None:
    v = Variant("b", 50, model="m", params={"temperature": 0.9, "max_tokens": 5})
    out = apply_variant({"model": "chat", "temperature": 0.3, "max_completion_tokens": 9}, v)
    assert out == {"model": "m", "temperature": 0.3, "max_completion_tokens": 9}
    assert apply_variant({"model": "chat", "temperature": None}, v)["temperature"] == 0.9


async def test_assignment_overrides_and_one_exposure_per_request(
    layer: ExperimentLayer, store: ExperimentStore, mock_upstream: MockUpstream
) -> None:
    _start(store, layer)
    obs = Observer()
    ids = []
    for i, user in enumerate(["u1", "u2", "u3", "u1", "u4", "u5"]):
        out = orjson.loads(await layer.complete(Endpoint.CHAT, *_body(user), f"r{i}", obs))  # type: ignore[arg-type]
        ids.append(out["id"])
        variant = obs.calls[-1][1]
        assert _sent(mock_upstream)["temperature"] == (0.1 if variant == "a" else 0.9)
    assert obs.calls[0] == obs.calls[3]  # u1 twice: the same variant
    assert {v for _, v in obs.calls} == {"a", "b"}
    await layer.complete(Endpoint.CHAT, *_body("u1", temperature=0.3), "r-own", obs)  # type: ignore[arg-type]
    assert _sent(mock_upstream)["temperature"] == 0.3  # the request's own field wins
    with pytest.raises(ModelNotFound):  # no unit: untouched, and `chat` itself is no model
        await layer.complete(Endpoint.CHAT, *_body(None), "r-none", obs)  # type: ignore[arg-type]
    assert len(obs.calls) == 7
    stream = await layer.open_stream(Endpoint.CHAT, *_body("u2", stream=True), "r-stream", obs)  # type: ignore[arg-type]
    async for _ in stream:
        pass
    await stream.aclose()
    layer.writer.flush()
    exposures = store.exposures("e")
    assert [x.request_id for x in exposures] == [*(f"r{i}" for i in range(6)), "r-own", "r-stream"]
    assert [x.response_id for x in exposures[:6]] == ids
    assert exposures[7].response_id is not None and exposures[7].variant == obs.calls[1][1]


async def test_assignment_from_an_openfeature_flag(layer: ExperimentLayer, store: ExperimentStore) -> None:
    def by_user(flag: InMemoryFlag[str], ctx: Any) -> Any:
        from openfeature.flag_evaluation import FlagResolutionDetails

        return FlagResolutionDetails(value="b" if ctx.targeting_key == "vip" else "a", variant="x")

    api.set_provider(
        InMemoryProvider({"e-flag": InMemoryFlag("a", {"a": "a", "b": "b"}, context_evaluator=by_user)})
    )
    try:
        _start(store, layer, flag="e-flag")
        obs = Observer()
        await layer.complete(Endpoint.CHAT, *_body("vip"), "r1", obs)  # type: ignore[arg-type]
        await layer.complete(Endpoint.CHAT, *_body("someone"), "r2", obs)  # type: ignore[arg-type]
        assert obs.calls == [("e", "b"), ("e", "a")]
    finally:
        api.clear_providers()
