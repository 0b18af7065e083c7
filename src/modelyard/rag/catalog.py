"""The RAG catalog in the metadata database: corpora, index versions, aliases, documents, chunk ids.

An alias (``kb@production``) is one row naming a version; moving it is a single-row ``UPDATE`` in one
transaction with its audit entry, so a reader sees the old or the new version, never a mix, and every
move is recorded (``rag.alias.set`` with the previous and new version). Methods are synchronous;
call them through a thread from async code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import Conflict, InvalidRequest, NotFound
from modelyard.rag.chunking import Chunking
from modelyard.rag.embedders import EmbedderIdentity, identity_key
from modelyard.rag.models import RagAliasRow, RagChunkRow, RagCorpusRow, RagDocumentRow, RagVersionRow
from modelyard.store.audit import SYSTEM_ACTOR, audit

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
DEFAULT_ALIAS = "production"


class CorpusNotFound(NotFound):
    code = "corpus_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


@dataclass(slots=True, frozen=True)
class Corpus:
    name: str
    embedder_source: str
    dimensions: int | None
    chunking: Chunking
    description: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "embedder": self.embedder_source, "dimensions": self.dimensions,
            "chunking": self.chunking.as_dict(), "description": self.description,
            "created_at": self.created_at.isoformat(),
        }  # fmt: skip


@dataclass(slots=True, frozen=True)
class Version:
    id: int
    corpus: str
    number: int
    namespace: str
    store: str
    embedder: EmbedderIdentity
    chunking: Chunking
    key: str
    status: str
    evaluation: dict[str, Any] | None
    error: str | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus, "version": self.number, "namespace": self.namespace, "store": self.store,
            "embedder": self.embedder.as_dict(), "chunking": self.chunking.as_dict(), "key": self.key,
            "status": self.status, "evaluation": self.evaluation, "error": self.error,
            "created_at": self.created_at.isoformat(),
        }  # fmt: skip


@dataclass(slots=True, frozen=True)
class StoredDocument:
    doc_id: str
    content_hash: str
    text: str
    metadata: dict[str, str]


def check_corpus_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            "a corpus name is 1-32 characters of a-z, 0-9 and -, starting with a letter", param="name"
        )
    return name


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidRequest("an alias is 1-64 characters of a-z, 0-9, _ and -", param="alias")
    return alias


def _version(row: RagVersionRow) -> Version:
    return Version(
        row.id, row.corpus, row.number, row.namespace, row.store, EmbedderIdentity.from_dict(row.embedder),
        Chunking.from_dict(row.chunking), row.key, row.status, row.evaluation, row.error, row.created_at,
    )  # fmt: skip


def _corpus(row: RagCorpusRow) -> Corpus:
    return Corpus(
        row.name, row.embedder_source, row.dimensions, Chunking.from_dict(row.chunking), row.description,
        row.created_at,
    )  # fmt: skip


class Catalog:
    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_sessions.begin() as session:
            yield session

    # -- corpora ---------------------------------------------------------------------------------
    def create_corpus(
        self,
        name: str,
        embedder_source: str,
        chunking: Chunking,
        *,
        dimensions: int | None = None,
        description: str = "",
        actor: str = SYSTEM_ACTOR,
    ) -> Corpus:
        check_corpus_name(name)
        if not isinstance(embedder_source, str) or not embedder_source:
            raise InvalidRequest(
                "`embedder` is an embedder source, e.g. packaged:all-minilm-l6-v2", param="embedder"
            )
        with self._write() as session:
            if session.get(RagCorpusRow, name) is not None:
                raise Conflict(f"a corpus `{name}` already exists")
            row = RagCorpusRow(
                name=name, embedder_source=embedder_source, dimensions=dimensions,
                chunking=chunking.as_dict(), description=description[:4000], created_by=actor,
            )  # fmt: skip
            session.add(row)
            audit(session, actor, "rag.corpus.create", name, embedder=embedder_source)
            session.flush()
            return _corpus(row)

    def corpus(self, name: str) -> Corpus:
        with self._read() as session:
            row = session.get(RagCorpusRow, name)
            if row is None:
                raise CorpusNotFound(f"no corpus `{name}`", param="corpus")
            return _corpus(row)

    def corpora(self) -> list[Corpus]:
        with self._read() as session:
            return [_corpus(r) for r in session.scalars(select(RagCorpusRow).order_by(RagCorpusRow.name))]

    # -- versions --------------------------------------------------------------------------------
    def create_version(
        self,
        corpus: str,
        embedder: EmbedderIdentity,
        chunking: Chunking,
        store: str,
        *,
        actor: str = SYSTEM_ACTOR,
    ) -> Version:
        """A new version in status ``building``, with its own namespace ``<corpus>_v<n>_<key>``."""
        key = identity_key(embedder, chunking.as_dict())
        with self._write() as session:
            if session.get(RagCorpusRow, corpus) is None:
                raise CorpusNotFound(f"no corpus `{corpus}`", param="corpus")
            last = session.scalar(
                select(func.max(RagVersionRow.number)).where(RagVersionRow.corpus == corpus)
            )
            number = (last or 0) + 1
            row = RagVersionRow(
                corpus=corpus, number=number, namespace=f"{corpus.replace('-', '_')}_v{number}_{key[:8]}",
                store=store, embedder=embedder.as_dict(), chunking=chunking.as_dict(), key=key,
                status="building",
            )  # fmt: skip
            session.add(row)
            session.flush()
            audit(session, actor, "rag.version.create", f"{corpus}:{number}", embedder=embedder.as_dict())
            return _version(row)

    def version(self, corpus: str, number: int) -> Version:
        with self._read() as session:
            row = session.scalar(
                select(RagVersionRow).where(RagVersionRow.corpus == corpus, RagVersionRow.number == number)
            )
            if row is None:
                self.corpus(corpus)
                raise VersionNotFound(f"no version {number} of corpus `{corpus}`", param="version")
            return _version(row)

    def versions(self, corpus: str) -> list[Version]:
        self.corpus(corpus)
        with self._read() as session:
            rows = session.scalars(
                select(RagVersionRow).where(RagVersionRow.corpus == corpus).order_by(RagVersionRow.number)
            )
            return [_version(r) for r in rows]

    def finish_version(self, version_id: int, status: str, *, error: str | None = None) -> None:
        with self._write() as session:
            session.execute(
                update(RagVersionRow).where(RagVersionRow.id == version_id).values(status=status, error=error)
            )

    def set_evaluation(self, version_id: int, evaluation: Mapping[str, Any]) -> None:
        with self._write() as session:
            session.execute(
                update(RagVersionRow)
                .where(RagVersionRow.id == version_id)
                .values(evaluation=dict(evaluation))
            )

    def drop_version_rows(self, version: Version, *, actor: str = SYSTEM_ACTOR) -> None:
        """Forget a version (its namespace is dropped by the caller); an aliased version is refused."""
        with self._write() as session:
            aliased = session.scalar(select(RagAliasRow.alias).where(RagAliasRow.version_id == version.id))
            if aliased is not None:
                raise Conflict(f"version {version.number} is aliased as `{aliased}`; move the alias first")
            session.execute(delete(RagChunkRow).where(RagChunkRow.version_id == version.id))
            session.execute(delete(RagVersionRow).where(RagVersionRow.id == version.id))
            audit(session, actor, "rag.version.delete", f"{version.corpus}:{version.number}")

    # -- aliases ---------------------------------------------------------------------------------
    def set_alias(
        self, corpus: str, alias: str, number: int, *, actor: str = SYSTEM_ACTOR, reason: str | None = None
    ) -> Version:
        """Point ``corpus@alias`` at version ``number`` (ready versions only): one row, audited."""
        check_alias(alias)
        with self._write() as session:
            row = session.scalar(
                select(RagVersionRow).where(RagVersionRow.corpus == corpus, RagVersionRow.number == number)
            )
            if row is None:
                self.corpus(corpus)
                raise VersionNotFound(f"no version {number} of corpus `{corpus}`", param="version")
            if row.status != "ready":
                raise Conflict(f"version {number} of `{corpus}` is {row.status}, not ready", param="version")
            now = datetime.now(UTC)
            previous = session.scalar(
                select(RagAliasRow.version_id).where(RagAliasRow.corpus == corpus, RagAliasRow.alias == alias)
            )
            if previous is None:
                session.add(
                    RagAliasRow(
                        corpus=corpus, alias=alias, version_id=row.id, updated_by=actor, updated_at=now
                    )
                )
            else:
                session.execute(
                    update(RagAliasRow)
                    .where(RagAliasRow.corpus == corpus, RagAliasRow.alias == alias)
                    .values(version_id=row.id, updated_by=actor, updated_at=now)
                )
            prev_number = (
                None
                if previous is None
                else session.scalar(select(RagVersionRow.number).where(RagVersionRow.id == previous))
            )
            audit(
                session, actor, "rag.alias.set", f"{corpus}@{alias}",
                previous=prev_number, version=number, reason=reason,
            )  # fmt: skip
            return _version(row)

    def aliases(self, corpus: str) -> dict[str, int]:
        self.corpus(corpus)
        with self._read() as session:
            rows = session.execute(
                select(RagAliasRow.alias, RagVersionRow.number)
                .join(RagVersionRow, RagVersionRow.id == RagAliasRow.version_id)
                .where(RagAliasRow.corpus == corpus)
            )
            return {a: n for a, n in rows}

    def resolve(self, corpus: str, ref: str | int | None = None) -> Version:
        """The version ``ref`` names: a number, ``"3"``, an alias, or (None) the ``production`` alias."""
        if ref is None:
            ref = DEFAULT_ALIAS
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return self.version(corpus, int(ref))
        with self._read() as session:
            row = session.scalar(
                select(RagVersionRow)
                .join(RagAliasRow, RagAliasRow.version_id == RagVersionRow.id)
                .where(RagAliasRow.corpus == corpus, RagAliasRow.alias == ref)
            )
            if row is None:
                self.corpus(corpus)
                raise VersionNotFound(f"corpus `{corpus}` has no alias `{ref}`", param="alias")
            return _version(row)

    # -- documents and chunks --------------------------------------------------------------------
    def documents(self, corpus: str, ids: Iterable[str] | None = None) -> dict[str, StoredDocument]:
        with self._read() as session:
            q = select(RagDocumentRow).where(RagDocumentRow.corpus == corpus)
            if ids is not None:
                q = q.where(RagDocumentRow.doc_id.in_(list(ids)))
            return {
                r.doc_id: StoredDocument(r.doc_id, r.content_hash, r.text, dict(r.doc_metadata))
                for r in session.scalars(q)
            }

    def chunk_ids(self, version_id: int) -> dict[str, set[str]]:
        """doc id -> the chunk ids stored in this version's namespace."""
        out: dict[str, set[str]] = {}
        with self._read() as session:
            for doc_id, chunk_id in session.execute(
                select(RagChunkRow.doc_id, RagChunkRow.chunk_id).where(RagChunkRow.version_id == version_id)
            ):
                out.setdefault(doc_id, set()).add(chunk_id)
        return out

    def record_sync(
        self,
        corpus: str,
        version_id: int,
        *,
        documents: Iterable[StoredDocument] = (),
        removed_docs: Iterable[str] = (),
        added_chunks: Iterable[tuple[str, str]] = (),  # (doc id, chunk id)
        removed_chunks: Iterable[str] = (),
    ) -> None:
        """After the vector store was written: the documents and chunk ids, in one transaction."""
        now = datetime.now(UTC)
        removed_docs, removed_chunks = list(removed_docs), list(removed_chunks)
        with self._write() as session:
            for d in documents:
                row = session.get(RagDocumentRow, (corpus, d.doc_id))
                if row is None:
                    session.add(RagDocumentRow(
                        corpus=corpus, doc_id=d.doc_id, content_hash=d.content_hash, text=d.text,
                        doc_metadata=d.metadata, updated_at=now,
                    ))  # fmt: skip
                else:
                    row.content_hash, row.text, row.doc_metadata, row.updated_at = (
                        d.content_hash, d.text, d.metadata, now,
                    )  # fmt: skip
            if removed_docs:
                session.execute(
                    delete(RagDocumentRow).where(
                        RagDocumentRow.corpus == corpus, RagDocumentRow.doc_id.in_(removed_docs)
                    )
                )
            for start in range(0, len(removed_chunks), 500):
                session.execute(
                    delete(RagChunkRow).where(
                        RagChunkRow.version_id == version_id,
                        RagChunkRow.chunk_id.in_(removed_chunks[start : start + 500]),
                    )
                )
            session.add_all(RagChunkRow(version_id=version_id, chunk_id=c, doc_id=d) for d, c in added_chunks)
