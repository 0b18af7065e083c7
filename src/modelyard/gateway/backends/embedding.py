"""A backend serving ``/v1/embeddings`` from an in-process :class:`~modelyard.embeddings.Embedder`."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import orjson

from modelyard.embeddings import Embedder
from modelyard.errors import ContextLengthExceeded, InvalidRequest, OverCapacity
from modelyard.gateway.backends.base import BackendRequest, Endpoint
from modelyard.gateway.loading import ModelLoad
from modelyard.protocol.openai import EmbeddingRequest


class EmbeddingBackend:
    """Loads the embedder in a worker thread at start; encodes one batch at a time off the loop."""

    endpoints = frozenset({Endpoint.EMBEDDINGS})
    local = True

    def __init__(
        self, name: str, model: str, load: Callable[[], Embedder], artifact: str | None = None
    ) -> None:
        self.name = name
        self._artifact = artifact
        self.model = model
        self._load = load
        self._embedder: Embedder | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self.served_inputs = 0
        self.load = ModelLoad(self.name, self.model)  # state and timings, kept by ModelLoader

    async def start(self) -> None:
        self._embedder = await anyio.to_thread.run_sync(self._load)

    async def close(self) -> None:
        self._embedder = None

    def ready(self) -> bool:
        return self._embedder is not None

    def stats(self) -> dict[str, Any]:
        return {"served_inputs": self.served_inputs}

    def registry_fields(self) -> dict[str, Any]:
        """What the registry records for this embedder (after ``start``)."""
        assert self._embedder is not None and self._artifact is not None
        return {
            "artifact_uri": self._artifact,
            "architecture": "sentence-transformers",
            "context_length": self._embedder.max_input_tokens,
            "serving_params": {"dimensions": self._embedder.dimensions},
        }

    def _texts(self, req: EmbeddingRequest, embedder: Embedder) -> list[str]:
        raw = req.input
        if isinstance(raw, str):
            items: list[Any] = [raw]
        elif raw and all(isinstance(x, int) for x in raw):
            items = [raw]
        else:
            items = list(raw)
        if not items:
            raise InvalidRequest("input must not be empty", param="input")
        texts = [embedder.decode(x) if isinstance(x, list) else x for x in items]
        if any(t == "" for t in texts):
            raise InvalidRequest("input must not contain empty strings", param="input")
        return texts

    def _run(self, req: EmbeddingRequest, embedder: Embedder) -> bytes:
        texts = self._texts(req, embedder)
        if req.dimensions is not None and req.dimensions != embedder.dimensions:
            raise InvalidRequest(
                f"this model only produces {embedder.dimensions} dimensions", param="dimensions"
            )
        counts = embedder.count_tokens(texts)
        for i, n in enumerate(counts):
            if n > embedder.max_input_tokens:
                raise ContextLengthExceeded(
                    f"input[{i}] has {n} tokens; this model's maximum is {embedder.max_input_tokens}",
                    param="input",
                )
        vectors = embedder.embed(texts)
        if req.encoding_format == "base64":
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode(),
                }
                for i, v in enumerate(vectors)
            ]
        else:
            data = [
                {"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)
            ]
        self.served_inputs += len(texts)
        total = sum(counts)
        return orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": req.model,
                "usage": {"prompt_tokens": total, "total_tokens": total},
            }
        )

    async def complete(self, request: BackendRequest) -> bytes:
        embedder = self._embedder
        if embedder is None:
            raise OverCapacity(f"embedder {self.model} is still loading; retry shortly")
        assert isinstance(request.parsed, EmbeddingRequest)
        parsed = request.parsed
        return await anyio.to_thread.run_sync(self._run, parsed, embedder, limiter=self._limiter)

    async def stream(self, request: BackendRequest) -> AsyncIterator[bytes]:
        raise InvalidRequest("embeddings cannot be streamed", param="stream")
        yield b""  # pragma: no cover - makes this an async generator
