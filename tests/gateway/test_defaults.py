"""``apply_defaults``: model-version defaults fill only the request fields that are still unset."""

from __future__ import annotations

from typing import Any

from modelyard.gateway.defaults import apply_defaults
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.registry.sampling import SamplingDefaults
from modelyard.settings import LimitSettings

DEFAULTS = SamplingDefaults(temperature=0.2, top_p=0.9, top_k=40, max_tokens=64, stop=("END",))
LIMITS = LimitSettings(max_tokens=50)


def _chat(**fields: Any) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body), body


def test_unset_fields_take_the_defaults_in_the_parsed_request_and_the_body() -> None:
    parsed, body = _chat(temperature=None)  # JSON null is unset too
    new, new_body = apply_defaults(parsed, body, DEFAULTS, LIMITS)
    assert isinstance(new, ChatCompletionRequest)
    assert (new.temperature, new.top_p, new.top_k, new.stop) == (0.2, 0.9, 40, ["END"])
    assert new.max_tokens == 50  # the default, capped at limits.max_tokens
    assert {k: new_body[k] for k in ("temperature", "top_p", "top_k", "max_tokens", "stop")} == {
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_tokens": 50, "stop": ["END"],
    }  # fmt: skip
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": None}
    assert parsed.temperature is None  # the originals are left as they were


def test_the_requests_own_values_win() -> None:
    parsed, body = _chat(temperature=0.0, top_p=1.0, max_completion_tokens=5, stop="x")
    new, new_body = apply_defaults(parsed, body, DEFAULTS, LIMITS)
    assert isinstance(new, ChatCompletionRequest)
    assert (new.temperature, new.top_p, new.effective_max_tokens(), new.stop, new.top_k) == (
        0.0,
        1.0,
        5,
        "x",
        40,
    )
    assert new.max_tokens is None and "max_tokens" not in new_body


def test_nothing_to_fill_returns_the_same_objects() -> None:
    parsed, body = _chat()
    assert apply_defaults(parsed, body, SamplingDefaults(), LIMITS) == (parsed, body)
    embedding = EmbeddingRequest(model="e", input="x")
    assert apply_defaults(embedding, {}, DEFAULTS, LIMITS)[0] is embedding
    completion = CompletionRequest(model="m", prompt="p", max_tokens=3)
    new, _ = apply_defaults(completion, {}, SamplingDefaults(max_tokens=9), LIMITS)
    assert new is completion
