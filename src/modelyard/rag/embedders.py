"""Embedder identity and the pool that hands out an embedder only for the identity it was built with.

An index version records the :class:`EmbedderIdentity` of the embedder that filled it: name, source,
a digest of the weights and tokenizer files, output dimensions and normalisation. A query through that
version asks :meth:`EmbedderPool.get` for exactly that identity; an embedder whose files or dimensions
differ raises :class:`EmbedderMismatch`, and one that cannot be loaded here raises
:class:`EmbedderUnavailable`: never a query embedded by another model than the index was.

Truncated dimensions (``dimensions`` below the model's own) keep the first ``dimensions`` components
and re-normalise: cheaper vectors, usually worse retrieval (the re-embed gate shows by how much).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.embeddings import Embedder, load_embedder, resolve_source
from modelyard.errors import ConfigError, Conflict

DIGEST_FILES = ("model.safetensors", "pytorch_model.bin", "tokenizer.json", "config.json")


class EmbedderMismatch(Conflict):
    code = "embedder_mismatch"


class EmbedderUnavailable(Conflict):
    code = "embedder_unavailable"


@dataclass(slots=True, frozen=True)
class EmbedderIdentity:
    name: str
    source: str
    digest: str  # sha256 (first 16 hex digits) of the weights, tokenizer and config files
    dimensions: int
    normalized: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderIdentity:
        return cls(
            str(data["name"]), str(data["source"]), str(data["digest"]), int(data["dimensions"]),
            bool(data.get("normalized", True)),
        )  # fmt: skip

    def describe(self) -> str:
        return f"{self.name} ({self.source}, digest {self.digest}, {self.dimensions} dims)"


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for name in DIGEST_FILES:
        path = folder / name
        if path.is_file():
            h.update(name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


class Truncated:
    """The first ``dimensions`` components of another embedder's vectors, re-normalised."""

    def __init__(self, inner: Embedder, dimensions: int) -> None:
        self._inner = inner
        self.dimensions = dimensions
        self.max_input_tokens = inner.max_input_tokens

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self._inner.count_tokens(texts)

    def decode(self, token_ids: list[int]) -> str:
        return self._inner.decode(token_ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        v = self._inner.embed(texts)[:, : self.dimensions]
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return np.asarray(v / np.clip(norms, 1e-12, None), dtype=np.float32)


def _name(source: str) -> str:
    return source.removeprefix("packaged:") if source.startswith("packaged:") else Path(source).name


class EmbedderPool:
    """Loads each embedder source once (thread-safe) and checks identities against what is loaded."""

    def __init__(self, load: Callable[[str], Embedder] = load_embedder) -> None:
        self._load = load
        self._loaded: dict[str, tuple[Embedder, str, Path]] = {}
        self._lock = threading.Lock()

    def _base(self, source: str) -> tuple[Embedder, str, Path]:
        with self._lock:
            entry = self._loaded.get(source)
            if entry is None:
                try:
                    folder = resolve_source(source)
                    embedder = self._load(source)
                except ConfigError as exc:
                    raise EmbedderUnavailable(
                        f"embedder `{source}` is not available on this server: {exc.message}",
                        param="embedder",
                    ) from None
                entry = (embedder, folder_digest(folder), folder)
                self._loaded[source] = entry
            return entry

    def identify(self, source: str, dimensions: int | None = None) -> EmbedderIdentity:
        """The identity of ``source`` (loading it), optionally truncated to ``dimensions``."""
        embedder, digest, _ = self._base(source)
        dims = dimensions or embedder.dimensions
        if not 1 <= dims <= embedder.dimensions:
            raise EmbedderMismatch(
                f"`dimensions` must be 1..{embedder.dimensions} for `{source}`", param="dimensions"
            )
        return EmbedderIdentity(_name(source), source, digest, dims, True)

    def get(self, identity: EmbedderIdentity) -> Embedder:
        """The embedder of exactly ``identity``; :class:`EmbedderMismatch` if the files here differ."""
        embedder, digest, _ = self._base(identity.source)
        if digest != identity.digest:
            raise EmbedderMismatch(
                f"the index was built with {identity.describe()}, but `{identity.source}` here has digest "
                f"{digest}: re-embed the corpus with this embedder, or deploy the one it was built with",
                param="embedder",
            )
        if identity.dimensions == embedder.dimensions:
            return embedder
        if identity.dimensions > embedder.dimensions:
            raise EmbedderMismatch(
                f"the index has {identity.dimensions} dims, `{identity.source}` gives {embedder.dimensions}",
                param="embedder",
            )
        return Truncated(embedder, identity.dimensions)

    def tokenizer(self, identity: EmbedderIdentity) -> Any:
        """The embedder's own ``tokenizers.Tokenizer`` (chunks are counted in its tokens)."""
        from tokenizers import Tokenizer

        _, _, folder = self._base(identity.source)
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        return tok


def identity_key(identity: EmbedderIdentity, chunking: dict[str, Any]) -> str:
    """The version key: a hash of the embedder identity and the chunking config."""
    blob = json.dumps({"embedder": identity.as_dict(), "chunking": chunking}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
