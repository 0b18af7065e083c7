"""The RAG layer (layer 3 of a request's path): a chat request whose ``model`` names a RAG bundle
retrieves, then goes on to the generator with the retrieved context.

The question is the last user message's text; the bundle's retriever (corpus alias, ``top_k``, metadata
filter, minimum score) answers it from one index version; the bundle's template, with ``{{context}}``
(numbered chunks ``[n] (document id) text``) and ``{{question}}`` filled, replaces that last user
message; ``model`` becomes the bundle's generator and the bundle's parameters fill what the request
leaves unset (the request wins). Every other request passes through untouched. The response carries
the extension field ``"rag": {"bundle", "corpus", "version", "citations": [{"index", "document_id",
"chunk_id", "score"}]}`` (non-stream: in the body; stream: in the first chunk).

In this slice bundles are defined in settings (``rag.bundles``), checked at start-up (template
variables present, a name that no model has); registry-versioned bundles are not built yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from modelyard.errors import InvalidRequest
from modelyard.gateway.backends.base import Endpoint, ParsedRequest
from modelyard.monitoring.observer import NULL_OBSERVER, RequestObserver
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.rag.runtime import RagRuntime
from modelyard.rag.service import QueryResult
from modelyard.registry.prompt_layer import PromptedStream, with_field
from modelyard.settings import RagBundleSettings


@dataclass(slots=True, frozen=True)
class Retrieved:
    parsed: ParsedRequest
    body: dict[str, Any]
    field: bytes


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def render_context(result: QueryResult) -> str:
    return "\n\n".join(f"[{i}] ({h.doc_id}) {h.text}" for i, h in enumerate(result.hits, 1))


class RagLayer:
    """Wraps the inner layer with the same interface; what it does not change is delegated."""

    def __init__(self, inner: Any, bundles: list[RagBundleSettings], runtime: RagRuntime) -> None:
        self.inner = inner
        self.bundles = {b.name: b for b in bundles}
        self.runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def retrieve(
        self, endpoint: Endpoint, parsed: ParsedRequest, body: dict[str, Any]
    ) -> Retrieved | None:
        bundle = self.bundles.get(getattr(parsed, "model", "") or "")
        if bundle is None:
            return None
        if endpoint is not Endpoint.CHAT:
            raise InvalidRequest(
                f"the RAG bundle `{bundle.name}` answers /v1/chat/completions", param="model"
            )
        messages = list(body.get("messages") or [])
        last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
        question = _text(messages[last].get("content")) if last is not None else ""
        if not question.strip():
            raise InvalidRequest("a RAG bundle needs a user message with the question", param="messages")
        svc = await anyio.to_thread.run_sync(self.runtime.service)
        result: QueryResult = await anyio.to_thread.run_sync(
            lambda: svc.query(
                bundle.corpus, question, ref=bundle.alias, k=bundle.top_k, where=bundle.filter or None
            )
        )
        hits = [h for h in result.hits if h.score >= bundle.min_score]
        kept = QueryResult(result.corpus, result.version, result.namespace, hits)
        prompt = bundle.template.replace("{{context}}", render_context(kept)).replace(
            "{{question}}", question
        )
        assert last is not None
        messages[last] = {"role": "user", "content": prompt}
        out = {**body, "messages": messages, "model": bundle.model}
        for name, value in bundle.parameters.items():
            if out.get(name) is None:
                out[name] = value
        field = orjson.dumps({
            "bundle": bundle.name, "corpus": kept.corpus, "version": kept.version,
            "citations": [
                {"index": i, "document_id": h.doc_id, "chunk_id": h.id, "score": round(h.score, 6)}
                for i, h in enumerate(hits, 1)
            ],
        })  # fmt: skip
        return Retrieved(ChatCompletionRequest.model_validate(out), out, field)

    async def complete(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> bytes:
        r = await self.retrieve(endpoint, parsed, body)
        if r is None:
            return await self.inner.complete(endpoint, parsed, body, request_id, observer)  # type: ignore[no-any-return]
        out: bytes = await self.inner.complete(endpoint, r.parsed, r.body, request_id, observer)
        return with_field(out, r.field, b"rag")

    async def open_stream(
        self,
        endpoint: Endpoint,
        parsed: ParsedRequest,
        body: dict[str, Any],
        request_id: str,
        observer: RequestObserver = NULL_OBSERVER,
    ) -> Any:
        r = await self.retrieve(endpoint, parsed, body)
        if r is None:
            return await self.inner.open_stream(endpoint, parsed, body, request_id, observer)
        handle = await self.inner.open_stream(endpoint, r.parsed, r.body, request_id, observer)
        return PromptedStream(handle, r.field, b"rag")
