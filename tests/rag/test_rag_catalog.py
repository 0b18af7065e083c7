"""Corpora, versions and aliases in the metadata database (SQLite and the real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from modelyard.errors import Conflict, InvalidRequest
from modelyard.rag.catalog import Catalog, CorpusNotFound, VersionNotFound
from modelyard.rag.chunking import Chunking
from modelyard.rag.embedders import EmbedderIdentity
from modelyard.store.audit import AuditEntry
from modelyard.store.db import create_db_engine, migrate

MINI = EmbedderIdentity("all-minilm-l6-v2", "packaged:all-minilm-l6-v2", "0123456789abcdef", 384)


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    engine = create_db_engine(database_url)
    migrate(engine)
    try:
        yield Catalog(engine)
    finally:
        engine.dispose()


def test_versions_are_numbered_with_own_namespaces_keyed_by_embedder_and_chunking(catalog: Catalog) -> None:
    catalog.create_corpus("support-kb", MINI.source, Chunking(128, 16))
    v1 = catalog.create_version("support-kb", MINI, Chunking(128, 16), "lancedb")
    v2 = catalog.create_version("support-kb", MINI, Chunking(64, 8), "lancedb")
    small = EmbedderIdentity(MINI.name, MINI.source, MINI.digest, 64)
    v3 = catalog.create_version("support-kb", small, Chunking(128, 16), "lancedb")
    assert [v.number for v in catalog.versions("support-kb")] == [1, 2, 3]
    assert len({v1.namespace, v2.namespace, v3.namespace}) == 3
    assert v1.namespace.startswith("support_kb_v1_") and v1.status == "building"
    assert len({v1.key, v2.key, v3.key}) == 3  # chunking and dimensions are both part of the key
    assert catalog.version("support-kb", 3).embedder == small
    with pytest.raises(Conflict):
        catalog.create_corpus("support-kb", MINI.source, Chunking())
    with pytest.raises(InvalidRequest):
        catalog.create_corpus("Bad Name", MINI.source, Chunking())
    with pytest.raises(CorpusNotFound):
        catalog.create_version("nope", MINI, Chunking(), "lancedb")


def test_alias_swap_is_one_audited_row_and_needs_a_ready_version(catalog: Catalog) -> None:
    catalog.create_corpus("kb", MINI.source, Chunking())
    v1 = catalog.create_version("kb", MINI, Chunking(), "lancedb")
    v2 = catalog.create_version("kb", MINI, Chunking(64, 8), "lancedb")
    with pytest.raises(VersionNotFound):
        catalog.resolve("kb", "production")
    with pytest.raises(Conflict):  # still building
        catalog.set_alias("kb", "production", 1)
    catalog.finish_version(v1.id, "ready")
    catalog.finish_version(v2.id, "ready")
    catalog.set_alias("kb", "production", 1, actor="key-1")
    assert catalog.resolve("kb", "production").number == 1
    assert catalog.resolve("kb").number == 1  # production is the default
    catalog.set_alias("kb", "production", 2, actor="key-2", reason="test")
    catalog.set_alias("kb", "staging", 1)
    assert catalog.resolve("kb", "production").number == 2
    assert catalog.resolve("kb", "2").number == 2 and catalog.resolve("kb", 1).number == 1
    assert catalog.aliases("kb") == {"production": 2, "staging": 1}
    with catalog._read() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "rag.alias.set").order_by(AuditEntry.id)
        ).all()
    assert [(r.actor, r.target, r.detail["previous"], r.detail["version"]) for r in rows] == [
        ("key-1", "kb@production", None, 1),
        ("key-2", "kb@production", 1, 2),
        ("system", "kb@staging", None, 1),
    ]
    with pytest.raises(VersionNotFound):
        catalog.set_alias("kb", "production", 9)
    with pytest.raises(Conflict):  # an aliased version is kept for rollback
        catalog.drop_version_rows(catalog.version("kb", 1))
    with pytest.raises(InvalidRequest):
        catalog.set_alias("kb", "Bad Alias!", 1)
