"""``embedding_similarity``: cosine similarity of answer and expected text under the packaged MiniLM.

The embedder (``modelyard.embeddings.load_embedder``, default source
``packaged:all-minilm-l6-v2``) is loaded lazily on first use, once per :class:`LazyEmbedder`, in a
worker thread, and every encode runs in a worker thread too, so the event loop never blocks. A
:class:`~modelyard.evals.scorers.registry.ScorerRegistry` owns one ``LazyEmbedder`` per source and
shares it between all its scorers; a process that already holds an embedder passes it in.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.embeddings import Embedder
from modelyard.evals.scorers.base import SpecReader, clamp01, expected_texts
from modelyard.evals.types import EvalItem, Score, TargetOutput

DEFAULT_SOURCE = "packaged:all-minilm-l6-v2"


@dataclass(slots=True)
class LazyEmbedder:
    """An embedder built on first use (thread-safe); ``embed`` runs off the event loop.

    Encodes are serialised: the model already spreads one batch over the CPU's threads, and several
    concurrent encodes would only contend for them.
    """

    source: str
    instance: Embedder | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _encode: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> Embedder:
        with self._lock:
            if self.instance is None:
                from modelyard.embeddings import load_embedder

                self.instance = load_embedder(self.source)
            return self.instance

    async def embed(self, texts: list[str]) -> np.ndarray:
        def run() -> np.ndarray:
            embedder = self.load()
            with self._encode:
                return embedder.embed(texts)

        return await asyncio.to_thread(run)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarities ``a @ b.T`` of (not necessarily normalised) embeddings."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.asarray(an @ bn.T)


@dataclass(slots=True)
class EmbeddingSimilarityScorer:
    """The best cosine similarity (clipped to [0, 1]) between the answer and any expected text."""

    name: str
    threshold: float
    weight: float
    embedder: LazyEmbedder
    expected: Any

    async def score(self, item: EvalItem, output: TargetOutput) -> Score:
        texts = expected_texts(item, self.expected)
        if not texts:
            return Score(0.0, False, "the item has no expected value")
        vectors = await self.embedder.embed([output.text, *texts])
        best = clamp01(float(cosine_matrix(vectors[:1], vectors[1:]).max()))
        passed = best >= self.threshold
        return Score(best, passed, None if passed else f"cosine {best:.3f} < {self.threshold}")


def build_embedding_similarity(
    r: SpecReader, embedders: dict[str, LazyEmbedder]
) -> EmbeddingSimilarityScorer:
    name, threshold, weight = r.common("embedding_similarity", 0.8)
    source = r.string("model", DEFAULT_SOURCE) or DEFAULT_SOURCE
    if source.startswith("packaged:"):
        from modelyard.embeddings import PACKAGED

        if source.removeprefix("packaged:") not in PACKAGED:
            raise r.fail("model", f"unknown packaged embedder {source!r}; use one of {sorted(PACKAGED)}")
    embedder = embedders.setdefault(source, LazyEmbedder(source))
    return EmbeddingSimilarityScorer(name, threshold, weight, embedder, r.raw("expected"))
