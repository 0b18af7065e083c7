"""The vector store contract (modelyard.rag.vectors) on both stores, checked against exact numpy
cosine top-k as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelyard.errors import Conflict, InvalidRequest
from modelyard.rag.vectors import NamespaceNotFound, Record


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _records(vectors: np.ndarray) -> list[Record]:
    return [
        Record(f"c{i}", f"d{i // 3}", f"text {i}", vectors[i], {"lang": "en" if i % 2 else "fr", "n": str(i)})
        for i in range(len(vectors))
    ]


def test_query_matches_exact_cosine_top_k(vector_store: Any) -> None:
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 60, 16)
    vector_store.create_namespace("kb_v1", 16)
    vector_store.upsert("kb_v1", _records(vectors))
    assert vector_store.count("kb_v1") == 60
    for q in _unit(rng, 5, 16):
        hits = vector_store.query("kb_v1", q, 5)
        expected = np.argsort(-(vectors @ q))[:5]
        assert [h.id for h in hits] == [f"c{i}" for i in expected]
        assert [h.score for h in hits] == pytest.approx([float(vectors[i] @ q) for i in expected], abs=1e-4)
        assert hits[0].metadata == {"lang": "en" if expected[0] % 2 else "fr", "n": str(expected[0])}
        assert hits[0].doc_id == f"d{expected[0] // 3}" and hits[0].text == f"text {expected[0]}"


def test_metadata_filter_keeps_only_matching_records(vector_store: Any) -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng, 40, 8)
    vector_store.create_namespace("kb_v1", 8)
    vector_store.upsert("kb_v1", _records(vectors))
    q = _unit(rng, 1, 8)[0]
    hits = vector_store.query("kb_v1", q, 4, {"lang": "en"})
    odd = [i for i in range(40) if i % 2]
    expected = sorted(odd, key=lambda i: -float(vectors[i] @ q))[:4]
    assert [h.id for h in hits] == [f"c{i}" for i in expected]
    assert vector_store.query("kb_v1", q, 4, {"lang": "en", "n": "3"})[0].id == "c3"
    assert vector_store.query("kb_v1", q, 4, {"lang": "de"}) == []
    with pytest.raises(InvalidRequest):
        vector_store.query("kb_v1", q, 4, {"lang": 3})


def test_upsert_replaces_and_delete_removes(vector_store: Any) -> None:
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 10, 8)
    vector_store.create_namespace("kb_v1", 8)
    vector_store.upsert("kb_v1", _records(vectors))
    moved = Record("c0", "d9", "new text", vectors[7], {"lang": "de"})
    vector_store.upsert("kb_v1", [moved])
    assert vector_store.count("kb_v1") == 10
    top = vector_store.query("kb_v1", vectors[7], 2)
    assert {h.id for h in top} == {"c0", "c7"}
    assert vector_store.query("kb_v1", vectors[7], 1, {"lang": "de"})[0].text == "new text"
    vector_store.delete("kb_v1", ["c0", "c7", "missing"])
    assert vector_store.count("kb_v1") == 8
    assert {h.id for h in vector_store.query("kb_v1", vectors[7], 2)}.isdisjoint({"c0", "c7"})


def test_namespaces_are_separate_and_dimensions_are_fixed(vector_store: Any) -> None:
    rng = np.random.default_rng(3)
    vector_store.create_namespace("kb_v1", 8)
    vector_store.create_namespace("kb_v1", 8)  # idempotent
    vector_store.create_namespace("kb_v2", 4)
    vector_store.upsert("kb_v1", _records(_unit(rng, 3, 8)))
    assert vector_store.count("kb_v2") == 0
    with pytest.raises(Conflict):
        vector_store.create_namespace("kb_v1", 4)
    with pytest.raises(Conflict):
        vector_store.upsert("kb_v2", _records(_unit(rng, 1, 8)))
    vector_store.drop("kb_v1")
    vector_store.drop("kb_v1")  # a missing namespace is ignored
    for call in (
        lambda: vector_store.count("kb_v1"),
        lambda: vector_store.query("kb_v1", _unit(rng, 1, 8)[0], 3),
        lambda: vector_store.upsert("kb_v1", _records(_unit(rng, 1, 8))),
    ):
        with pytest.raises(NamespaceNotFound):
            call()
    with pytest.raises(InvalidRequest):
        vector_store.create_namespace("Bad-Name", 8)
