"""The prompt layer (layer 4 of a request's path): a registry prompt reference becomes messages,
a model and default parameters before tenancy admission sees the request.

``/v1/chat/completions`` with ``"prompt": {"id", "version"?, "variables"?}`` and ``/v1/completions``
whose ``prompt`` is such an object are rendered here; every other request passes through untouched.
The version is a number (digits) or a label; absent, label ``production``, else the latest version.
The rendered template messages come first, then the request's own. The prompt version's ``model``,
``parameters`` and ``response_format`` fill only what the request leaves unset, so the request wins
over the prompt and the prompt over the model version's defaults, which
:func:`~modelyard.gateway.defaults.apply_defaults` fills later in the pipeline (whose parameter wins:
``docs/prompts.md``). The resolved ``name:version`` goes to the observer (request log, span, metric
label), to the response body as ``"prompt": {"id", "version"}`` (non-stream) or in the first chunk
(stream), and to the ``x-modelyard-prompt-version`` header (set at the HTTP edge from the observer).

Errors: an unknown prompt or one the caller's tenant may not see is a 404 naming ``prompt.id``; an
unknown version or label a 404 naming ``prompt.version``; a missing, undeclared or mistyped
variable a 400 naming ``prompt.variables.<name>``; no model anywhere a 400 naming ``model``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from modelyard.errors import InvalidRequest
from modelyard.gateway.backends.base import Endpoint, ParsedRequest
from modelyard.monitoring.observer import NULL_OBSERVER, RequestObserver
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest, PromptReference
from modelyard.registry.prompt_book import PromptBook
from modelyard.registry.prompt_spec import render
from modelyard.registry.prompts import PromptRegistry
from modelyard.registry.service import Registry

PROMPT_HEADER = "x-modelyard-prompt-version"


@dataclass(slots=True, frozen=True)
class Rendered:
    parsed: ParsedRequest
    body: dict[str, Any]
    name: str
    version: int

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def field(self) -> bytes:
        return orjson.dumps({"id": self.name, "version": str(self.version)})


def prompt_reference(parsed: ParsedRequest) -> PromptReference | None:
    ref = getattr(parsed, "prompt", None)
    return ref if isinstance(ref, PromptReference) else None


def _viewer() -> str | None:
    from modelyard.tenancy.gateway import current_principal

    principal = current_principal.get()
    return principal.tenant_id if principal is not None else None


def _fill(body: dict[str, Any], parameters: dict[str, Any], chat: bool) -> None:
    """Set each prompt default the request leaves unset (absent or JSON null)."""
    for name, value in parameters.items():
        if name in ("max_tokens", "max_completion_tokens"):
            if body.get("max_tokens") is not None or body.get("max_completion_tokens") is not None:
                continue
            name = name if chat else "max_tokens"
        if body.get(name) is None:
            body[name] = value


class PromptLayer:
    """Wraps the inner gateway (``Gateway`` / ``TenantGateway``, or the next layer) with the same
    interface; what it does not change (``visible_models``, ``drain``, ``router``...) is delegated."""

    def __init__(self, inner: Any, book: PromptBook) -> None:
        self.inner = inner
        self.book = book
        self.prompts = book.prompts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @classmethod
    async def build(cls, inner: Any, registry: Registry) -> PromptLayer:
        """The layer on ``registry``'s database, its book loaded (poll ``book`` to follow changes)."""
        book = PromptBook(registry, PromptRegistry(registry.engine))
        await anyio.to_thread.run_sync(book.refresh)
        return cls(inner, book)

    def render(self, endpoint: Endpoint, parsed: ParsedRequest, body: dict[str, Any]) -> Rendered | None:
        """The request with its prompt reference rendered; None when it has none. Never blocks."""
        ref = prompt_reference(parsed)
        if ref is None or endpoint not in (Endpoint.CHAT, Endpoint.COMPLETIONS):
            return None
        chat = endpoint is Endpoint.CHAT
        info = self.book.lookup(ref.id, _viewer())
        version = info.select(ref.version)
        spec = self.book.spec(version)
        if (spec.kind == "chat") != chat:
            route = "/v1/chat/completions" if spec.kind == "chat" else "/v1/completions"
            raise InvalidRequest(
                f"the prompt `{ref.id}` is a {spec.kind} prompt: send it to {route}", param="prompt.id"
            )
        rendered = render(spec, ref.variables)
        out = {k: v for k, v in body.items() if k != "prompt"}
        if chat:
            assert isinstance(rendered, list)
            out["messages"] = [*rendered, *(body.get("messages") or [])]
        else:
            out["prompt"] = rendered
        if not out.get("model"):
            if not spec.model:
                raise InvalidRequest(
                    f"name a `model`: the prompt `{ref.id}:{version.version}` has no default model",
                    param="model",
                )
            out["model"] = spec.model
        _fill(out, spec.parameters, chat)
        if chat and spec.response_format is not None and out.get("response_format") is None:
            out["response_format"] = spec.response_format
        model = ChatCompletionRequest if chat else CompletionRequest
        return Rendered(model.model_validate(out), out, info.name, version.version)

    async def complete(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> bytes:
        r = self.render(endpoint, parsed, body)
        if r is None:
            return await self.inner.complete(endpoint, parsed, body, request_id, observer)  # type: ignore[no-any-return]
        observer.prompted(r.ref, r.parsed.model, r.body)
        out: bytes = await self.inner.complete(endpoint, r.parsed, r.body, request_id, observer)
        return with_field(out, r.field())

    async def open_stream(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> Any:
        r = self.render(endpoint, parsed, body)
        if r is None:
            return await self.inner.open_stream(endpoint, parsed, body, request_id, observer)
        observer.prompted(r.ref, r.parsed.model, r.body)
        handle = await self.inner.open_stream(endpoint, r.parsed, r.body, request_id, observer)
        return PromptedStream(handle, r.field())


def with_field(payload: bytes, field: bytes, name: bytes = b"prompt") -> bytes:
    """``payload`` (a JSON object) with ``"<name>": field`` added; anything else unchanged."""
    body = payload.rstrip()
    if not (body.startswith(b"{") and body.endswith(b"}")):
        return payload
    inner = body[1:-1].strip()
    return b"{" + inner + (b"," if inner else b"") + b'"' + name + b'":' + field + b"}"


class PromptedStream:
    """A stream handle whose first payload carries an extension field (``prompt`` unless ``name``
    says otherwise; the RAG layer's ``rag`` too)."""

    def __init__(self, inner: Any, field: bytes, name: bytes = b"prompt") -> None:
        self._inner = inner
        self._field: bytes | None = field
        self._name = name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        payload: bytes = await self._inner.__anext__()
        if self._field is not None:
            payload, self._field = with_field(payload, self._field, self._name), None
        return payload

    async def aclose(self) -> None:
        await self._inner.aclose()
