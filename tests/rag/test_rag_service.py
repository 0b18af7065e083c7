"""Ingest, query through aliases and re-embed with the real MiniLM on both vector stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rag_stores import STORES, make_store
from sqlalchemy import select

from modelyard.errors import InvalidRequest
from modelyard.rag.catalog import Catalog
from modelyard.rag.chunking import Chunking
from modelyard.rag.embedders import EmbedderIdentity, EmbedderMismatch, EmbedderUnavailable
from modelyard.rag.evaluate import LabelledSet
from modelyard.rag.models import RagChunkRow
from modelyard.rag.service import RagService
from modelyard.rag.sources import SourceDocument, read_sources
from modelyard.store.db import create_db_engine, migrate

pytestmark = pytest.mark.slow
KB = Path(__file__).parents[2] / "evals" / "rag"
MINILM = "packaged:all-minilm-l6-v2"


@pytest.fixture(scope="module", params=STORES)
def rag(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pool: Any
) -> Iterator[RagService]:
    tmp = tmp_path_factory.mktemp(f"rag-{request.param}")
    engine = create_db_engine(f"sqlite:///{tmp / 'db.sqlite'}")
    migrate(engine)
    store = make_store(request.param, request, tmp)
    service = RagService(Catalog(engine), store, pool)
    service.create_corpus("kb", MINILM, Chunking(128, 16))
    service.ingest("kb", read_sources([KB / "documents.jsonl"]))
    try:
        yield service
    finally:
        store.close()
        engine.dispose()


def _chunk_count(rag: RagService, version_id: int) -> int:
    with rag.catalog._read() as session:
        return len(session.scalars(select(RagChunkRow).where(RagChunkRow.version_id == version_id)).all())


def test_query_through_the_alias_finds_the_document_and_filters_by_metadata(rag: RagService) -> None:
    result = rag.query("kb", "Who first spotted the planet Oberis?", k=3)
    assert result.version == 1 and result.hits[0].doc_id == "planet-oberis-discovery"
    assert result.hits[0].metadata == {"topic": "planet"}
    filtered = rag.query("kb", "Who first spotted the planet Oberis?", k=5, where={"topic": "company"})
    assert filtered.hits and all(h.doc_id.startswith("company-") for h in filtered.hits)
    with pytest.raises(InvalidRequest):
        rag.query("kb", "   ")


def test_reingest_embeds_only_what_changed_and_deletes(rag: RagService) -> None:
    rag.create_corpus(f"notes-{rag.store.name}", MINILM, Chunking(24, 4))
    name = f"notes-{rag.store.name}"
    long = " ".join(f"Paragraph {i} talks about topic number {i} in some detail." for i in range(12))
    docs = [
        SourceDocument("a", long, {"team": "red"}),
        SourceDocument("b", "Short note about invoices.", {"team": "blue"}),
        SourceDocument("c", "Short note about shipping.", {"team": "blue"}),
    ]
    first = rag.ingest(name, docs)
    assert first.documents_added == 3 and first.chunks_embedded > 5
    version = rag.catalog.resolve(name)
    total = rag.store.count(version.namespace)
    assert total == first.chunks_embedded == _chunk_count(rag, version.id)
    again = rag.ingest(name, docs)
    assert (again.documents_unchanged, again.chunks_embedded, again.chunks_removed) == (3, 0, 0)
    edited = long.replace("Paragraph 11 talks about topic number 11", "Paragraph 11 is now about penguins")
    changed = rag.ingest(name, [SourceDocument("a", edited, {"team": "red"}), *docs[1:]])
    assert changed.documents_changed == 1 and 1 <= changed.chunks_embedded <= 2  # only the tail chunk(s)
    assert changed.chunks_removed == changed.chunks_embedded
    assert rag.store.count(version.namespace) == total
    assert rag.query(name, "penguins", k=1).hits[0].doc_id == "a"
    retagged = rag.ingest(name, [docs[0], docs[1], SourceDocument("c", docs[2].text, {"team": "red"})])
    assert retagged.documents_changed == 2 and retagged.chunks_embedded >= 2  # a's text back, c's metadata
    assert rag.query(name, "shipping", k=1, where={"team": "red"}).hits[0].doc_id == "c"
    deleted = rag.ingest(name, [], delete=["b"])
    assert deleted.documents_removed == 1 and deleted.chunks_removed == 1
    assert all(h.doc_id != "b" for h in rag.query(name, "invoices", k=10).hits)
    pruned = rag.ingest(name, [docs[0]], prune=True)
    assert pruned.documents_removed == 1
    assert {h.doc_id for h in rag.query(name, "shipping", k=50).hits} == {"a"}
    assert set(rag.catalog.documents(name)) == {"a"}
    assert rag.store.count(version.namespace) == _chunk_count(rag, version.id)


def test_non_utf8_file_is_refused_and_the_live_version_is_untouched(rag: RagService, tmp_path: Path) -> None:
    version = rag.catalog.resolve("kb")
    before = (rag.store.count(version.namespace), rag.catalog.documents("kb"))
    (tmp_path / "good.md").write_text("# Good\nA fine document about Varnholt.", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    with pytest.raises(InvalidRequest, match=r"bad\.txt is not UTF-8"):
        rag.ingest("kb", read_sources([tmp_path]))
    assert (rag.store.count(version.namespace), rag.catalog.documents("kb")) == before
    assert rag.catalog.resolve("kb").number == version.number


def test_a_query_never_uses_another_embedder_than_the_index(rag: RagService) -> None:
    version = rag.catalog.resolve("kb")
    real = version.embedder
    other = EmbedderIdentity(real.name, real.source, "feedfacefeedface", real.dimensions)
    forged = rag.catalog.create_version("kb", other, version.chunking, rag.store.name)
    rag.catalog.finish_version(forged.id, "ready")
    with pytest.raises(EmbedderMismatch, match="digest"):
        rag.query("kb", "Oberis", ref=forged.number)
    missing = EmbedderIdentity("gone", "/nonexistent/embedder", real.digest, real.dimensions)
    absent = rag.catalog.create_version("kb", missing, version.chunking, rag.store.name)
    rag.catalog.finish_version(absent.id, "ready")
    rag.catalog.set_alias("kb", "broken", absent.number)
    with pytest.raises(EmbedderUnavailable, match="not available"):
        rag.query("kb", "Oberis", ref="broken")
    assert rag.query("kb", "Oberis").version == version.number  # production is unaffected


def test_reembed_with_truncated_dimensions_is_refused_and_other_chunking_decided_by_numbers(
    rag: RagService,
) -> None:
    labels = LabelledSet.load(KB / "queries.jsonl")
    assert len(labels.queries) >= 50
    live = rag.catalog.resolve("kb").number
    worse = rag.reembed("kb", MINILM, labels, dimensions=64, tolerance=0.02)
    assert worse["decision"] == "kept" and worse["gate"]["passed"] is False
    assert "ndcg@10" in worse["gate"]["reason"]
    assert worse["candidate"]["metrics"]["ndcg@10"] < worse["baseline"]["metrics"]["ndcg@10"] - 0.02
    assert rag.catalog.resolve("kb").number == live  # the alias did not move
    kept = rag.catalog.version("kb", worse["candidate"]["version"])
    assert kept.status == "ready" and kept.embedder.dimensions == 64  # left for inspection
    assert kept.evaluation is not None and kept.evaluation["metrics"] == worse["candidate"]["metrics"]
    assert rag.catalog.version("kb", live).evaluation["metrics"] == worse["baseline"]["metrics"]  # type: ignore[index]
    rechunked = rag.reembed("kb", MINILM, labels, chunking=Chunking(16, 4), tolerance=0.02)
    within = all(
        rechunked["candidate"]["metrics"][m] >= rechunked["baseline"]["metrics"][m] - 0.02
        for m in ("ndcg@10", "recall@5")
    )
    assert rechunked["decision"] == ("swapped" if within else "kept")
    assert rag.catalog.resolve("kb").number == (rechunked["candidate"]["version"] if within else live)
    print("\nre-embed gate:", worse["gate"], rechunked["gate"])
