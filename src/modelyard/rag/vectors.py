"""The vector store seam: one namespace per index version, exact or approximate cosine top-k.

Every implementation keeps the same contract, checked by the same tests (``tests/rag/test_rag_vectors.py``)
against each store:

* a **namespace** is created once with its dimensions; ``create_namespace`` on an existing one with the
  same dimensions does nothing, with other dimensions it raises :class:`~modelyard.errors.Conflict`;
* ``upsert`` inserts records or replaces those with the same ``id`` (whole record);
* ``delete`` removes ids (unknown ids are ignored);
* ``query`` returns at most ``k`` hits, best first, with ``score`` = cosine similarity (1 - cosine
  distance), keeping only records whose metadata holds every ``key: value`` of ``where``;
* ``drop`` removes the namespace and its records (a missing one is ignored);
* an operation on a namespace that does not exist raises :class:`NamespaceNotFound`.

Stores are synchronous and thread-safe: call them through a thread from async code. Vectors are float32
and expected L2-normalised (the embedders normalise); metadata values are strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from modelyard.errors import InvalidRequest, NotFound

_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class NamespaceNotFound(NotFound):
    code = "namespace_not_found"


@dataclass(slots=True)
class Record:
    """One chunk as stored: ``id`` is the chunk id, ``doc_id`` the document it comes from."""

    id: str
    doc_id: str
    text: str
    vector: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Hit:
    id: str
    doc_id: str
    text: str
    score: float
    metadata: dict[str, str]


class VectorStore(Protocol):
    """Namespaced vector storage with cosine top-k and metadata equality filters (contract above)."""

    name: str  # "lancedb" or "pgvector", recorded with each version

    def create_namespace(self, namespace: str, dimensions: int) -> None:
        """Create ``namespace`` for vectors of ``dimensions``; idempotent for the same dimensions."""
        ...

    def upsert(self, namespace: str, records: Sequence[Record]) -> None:
        """Insert or wholly replace records by ``id``."""
        ...

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        """Remove records by ``id``; unknown ids are ignored."""
        ...

    def query(
        self, namespace: str, vector: np.ndarray, k: int, where: Mapping[str, str] | None = None
    ) -> list[Hit]:
        """At most ``k`` hits, best first, whose metadata contains every pair of ``where``."""
        ...

    def count(self, namespace: str) -> int:
        """Records in ``namespace``."""
        ...

    def drop(self, namespace: str) -> None:
        """Remove ``namespace``; a missing one is ignored."""
        ...

    def close(self) -> None: ...


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE.match(namespace):
        raise InvalidRequest(
            f"namespace {namespace!r} must be 1-48 characters of a-z, 0-9 and _, starting with a letter"
        )
    return namespace


def tags(metadata: Mapping[str, str]) -> list[str]:
    """Metadata as ``key=value`` strings: both stores filter with list containment on these."""
    return [f"{k}={v}" for k, v in sorted(metadata.items())]


def check_where(where: Mapping[str, str] | None) -> list[str]:
    if not where:
        return []
    for k, v in where.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidRequest("a metadata filter maps string keys to string values", param="filter")
    return tags(where)


def dump_metadata(metadata: Mapping[str, str]) -> str:
    return json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"))


def load_metadata(raw: str | None) -> dict[str, str]:
    return dict(json.loads(raw)) if raw else {}
