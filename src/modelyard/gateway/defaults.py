"""Model-version defaults: the one place they fill a request's unset sampling fields.

Whose parameter wins, highest first (``docs/sampling-defaults.md``): the request's own fields; the
experiment variant's overrides; the prompt version's defaults; the RAG bundle's generator parameters;
the model version's defaults (:class:`~modelyard.registry.defaults.DefaultsBook`: the registry's
override, the artifact's, the settings'); the engine's defaults. The layers above this one fill the
request before it gets here, so this step only fills fields that are still ``None`` (a field sent as
JSON ``null`` is unset too); what stays ``None`` is left to the backend's engine.
"""

from __future__ import annotations

from typing import Any, Protocol

from modelyard.gateway.backends.base import ParsedRequest
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest
from modelyard.registry.sampling import SamplingDefaults
from modelyard.settings import LimitSettings

# Request fields a model version may default (``max_tokens`` is handled on its own: a chat request's
# ``max_completion_tokens`` sets it too).
_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
)


class DefaultsSource(Protocol):
    """Where the gateway looks up a model version's defaults; must not block or do I/O."""

    def for_model(self, ref: str, served: str) -> SamplingDefaults:
        """The defaults of the version that ``ref`` (the request's ``model``) names; ``served`` is
        the routed model name it resolved to."""
        ...


def apply_defaults(
    parsed: ParsedRequest, body: dict[str, Any], defaults: SamplingDefaults, limits: LimitSettings
) -> tuple[ParsedRequest, dict[str, Any]]:
    """``parsed`` and ``body`` with ``defaults`` in the fields both leave unset (new objects if any).

    ``body`` gets the same values so that remote and queued backends, which forward or re-parse it,
    see what the local engine sees. A ``max_tokens`` default is capped at ``limits.max_tokens``.
    """
    if not defaults or not isinstance(parsed, ChatCompletionRequest | CompletionRequest):
        return parsed, body
    update: dict[str, Any] = {
        name: getattr(defaults, name)
        for name in _FIELDS
        if getattr(defaults, name) is not None and getattr(parsed, name) is None
    }
    unset_max = (
        parsed.effective_max_tokens() if isinstance(parsed, ChatCompletionRequest) else parsed.max_tokens
    ) is None
    if defaults.max_tokens is not None and unset_max:
        update["max_tokens"] = min(defaults.max_tokens, limits.max_tokens)
    if defaults.stop is not None and parsed.stop is None:
        update["stop"] = list(defaults.stop)
    if not update:
        return parsed, body
    return parsed.model_copy(update=update), {**body, **update}
