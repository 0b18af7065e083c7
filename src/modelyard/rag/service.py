"""RAG operations over the catalog, a vector store and the embedder pool: ingest, query, build a
version, evaluate it, and re-embed behind the accuracy gate.

* **Ingest** reads nothing itself (sources are parsed and validated first, :mod:`~modelyard.rag.sources`),
  finds the version an alias names (the corpus's first version is built on the first ingest), embeds
  only chunks whose id (a hash of their text and metadata) is not in that version yet, deletes chunks no
  longer produced, then records documents and chunk ids in one metadata transaction.
* **Query** resolves the alias once, so one answer comes entirely from one version, and embeds with
  exactly that version's embedder (:class:`~modelyard.rag.embedders.EmbedderMismatch` otherwise).
* **Re-embed** builds a new version from the corpus's stored documents, evaluates it and the alias's
  current version on a labelled set, and moves the alias only if the gate passes; otherwise the new
  version stays (``ready``, unaliased) for inspection, and the report says why.

Methods are synchronous (CPU-bound embedding, blocking store clients); call them off the event loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from modelyard.errors import Conflict, InvalidRequest
from modelyard.rag import evaluate as evaluation
from modelyard.rag.catalog import DEFAULT_ALIAS, Catalog, Corpus, StoredDocument, Version, VersionNotFound
from modelyard.rag.chunking import Chunk, Chunking, chunk_document, content_hash
from modelyard.rag.embedders import EmbedderIdentity, EmbedderPool
from modelyard.rag.sources import SourceDocument
from modelyard.rag.vectors import Hit, Record, VectorStore
from modelyard.store.audit import SYSTEM_ACTOR

Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks to embed)


@dataclass(slots=True)
class IngestReport:
    corpus: str
    version: int
    documents_added: int = 0
    documents_changed: int = 0
    documents_unchanged: int = 0
    documents_removed: int = 0
    chunks_embedded: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chunks_per_s"] = round(self.chunks_embedded / self.seconds, 1) if self.seconds > 0 else None
        return d


@dataclass(slots=True, frozen=True)
class QueryResult:
    corpus: str
    version: int
    namespace: str
    hits: list[Hit]

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": "rag.query_result", "corpus": self.corpus, "version": self.version,
            "namespace": self.namespace,
            "data": [
                {"chunk_id": h.id, "document_id": h.doc_id, "score": round(h.score, 6), "text": h.text,
                 "metadata": h.metadata}
                for h in self.hits
            ],
        }  # fmt: skip


def _doc_hash(d: SourceDocument) -> str:
    return content_hash(json.dumps({"text": d.text, "metadata": d.metadata}, sort_keys=True))


class RagService:
    def __init__(self, catalog: Catalog, store: VectorStore, pool: EmbedderPool, *, batch: int = 64) -> None:
        self.catalog, self.store, self.pool, self._batch = catalog, store, pool, batch
        self._writers: dict[str, threading.Lock] = {}
        self._writers_lock = threading.Lock()

    def _writer(self, corpus: str) -> threading.Lock:
        """One writer per corpus in this process (ingests and builds of a corpus do not interleave;
        across processes they are not serialised yet)."""
        with self._writers_lock:
            return self._writers.setdefault(corpus, threading.Lock())

    # -- corpora and versions --------------------------------------------------------------------
    def create_corpus(
        self,
        name: str,
        embedder: str,
        chunking: Chunking,
        *,
        dimensions: int | None = None,
        description: str = "",
        actor: str = SYSTEM_ACTOR,
    ) -> Corpus:
        return self.catalog.create_corpus(
            name, embedder, chunking, dimensions=dimensions, description=description, actor=actor
        )

    def _chunks(
        self, version: Version, docs: Iterable[SourceDocument | StoredDocument]
    ) -> dict[str, list[Chunk]]:
        tokenizer = self.pool.tokenizer(version.embedder)
        out = {}
        for d in docs:
            doc_id = d.id if isinstance(d, SourceDocument) else d.doc_id
            meta = json.dumps(d.metadata, sort_keys=True)
            chunks = chunk_document(doc_id, d.text, tokenizer, version.chunking)
            # a chunk's id covers its metadata too: a metadata change re-writes the document's chunks
            out[doc_id] = [
                Chunk(f"{doc_id}#{content_hash(c.text + meta)[:12]}", doc_id, c.index, c.text, c.hash)
                for c in chunks
            ]
        return out

    def _sync(
        self,
        version: Version,
        docs: Mapping[str, SourceDocument | StoredDocument],
        removed: Iterable[str],
        progress: Progress | None,
    ) -> tuple[int, int, list[tuple[str, str]], list[str]]:
        """Write the vector store so that ``version`` holds ``docs``' chunks and none of ``removed``'s."""
        if version.store != self.store.name:
            raise Conflict(
                f"version {version.number} lives in {version.store}, this server uses {self.store.name}"
            )
        have = self.catalog.chunk_ids(version.id)
        wanted = self._chunks(version, docs.values())
        metadata = {doc_id: d.metadata for doc_id, d in docs.items()}
        new = [c for doc_id, cs in wanted.items() for c in cs if c.id not in have.get(doc_id, set())]
        stale = [cid for doc_id, cs in wanted.items() for cid in have.get(doc_id, set()) - {c.id for c in cs}]
        stale += [cid for doc_id in removed for cid in have.get(doc_id, set())]
        embedder = self.pool.get(version.embedder)
        self.store.create_namespace(version.namespace, version.embedder.dimensions)
        if progress:
            progress(0, len(new))
        for start in range(0, len(new), self._batch):
            batch = new[start : start + self._batch]
            vectors = embedder.embed([c.text for c in batch])
            self.store.upsert(
                version.namespace,
                [Record(c.id, c.doc_id, c.text, vectors[i], metadata[c.doc_id]) for i, c in enumerate(batch)],
            )
            if progress:
                progress(start + len(batch), len(new))
        if stale:
            self.store.delete(version.namespace, stale)
        return len(new), len(stale), [(c.doc_id, c.id) for c in new], stale

    def ingest(
        self,
        corpus_name: str,
        documents: list[SourceDocument],
        *,
        delete: Iterable[str] = (),
        prune: bool = False,
        alias: str = DEFAULT_ALIAS,
        actor: str = SYSTEM_ACTOR,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Bring the version ``corpus@alias`` names up to date with ``documents`` (see module docstring).

        ``delete`` removes documents by id; ``prune`` also removes every stored document not in
        ``documents``. The corpus's first ingest builds version 1 and points ``alias`` at it.
        """
        with self._writer(corpus_name):
            return self._ingest(corpus_name, documents, delete, prune, alias, actor, progress)

    def _ingest(
        self,
        corpus_name: str,
        documents: list[SourceDocument],
        delete: Iterable[str],
        prune: bool,
        alias: str,
        actor: str,
        progress: Progress | None,
    ) -> IngestReport:
        started = time.perf_counter()
        corpus = self.catalog.corpus(corpus_name)
        ids = [d.id for d in documents]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("a document id appears twice", param="documents")
        first = False
        try:
            version = self.catalog.resolve(corpus_name, alias)
        except VersionNotFound:
            if self.catalog.versions(corpus_name):
                raise
            identity = self.pool.identify(corpus.embedder_source, corpus.dimensions)
            version = self.catalog.create_version(
                corpus_name, identity, corpus.chunking, self.store.name, actor=actor
            )
            first = True
        stored = self.catalog.documents(corpus_name)
        incoming = {d.id: d for d in documents}
        changed = {
            i: d for i, d in incoming.items() if i not in stored or stored[i].content_hash != _doc_hash(d)
        }
        removed = set(delete) & set(stored)
        if prune:
            removed |= set(stored) - set(incoming)
        removed -= set(incoming)
        report = IngestReport(corpus_name, version.number)
        report.documents_added = sum(1 for i in changed if i not in stored)
        report.documents_changed = len(changed) - report.documents_added
        report.documents_unchanged = len(incoming) - len(changed)
        report.documents_removed = len(removed)
        try:
            embedded, dropped, added, stale = self._sync(version, changed, removed, progress)
        except BaseException as exc:
            if first:
                self.catalog.finish_version(version.id, "failed", error=str(exc)[:2000])
            raise
        self.catalog.record_sync(
            corpus_name, version.id,
            documents=[StoredDocument(i, _doc_hash(d), d.text, d.metadata) for i, d in changed.items()],
            removed_docs=removed, added_chunks=added, removed_chunks=stale,
        )  # fmt: skip
        if first:
            self.catalog.finish_version(version.id, "ready")
            self.catalog.set_alias(corpus_name, alias, version.number, actor=actor, reason="first ingest")
        report.chunks_embedded, report.chunks_removed = embedded, dropped
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def build_version(
        self,
        corpus_name: str,
        identity: EmbedderIdentity,
        chunking: Chunking,
        *,
        actor: str = SYSTEM_ACTOR,
        progress: Progress | None = None,
    ) -> Version:
        """A new ready version holding every stored document of the corpus (``failed`` on an error)."""
        with self._writer(corpus_name):
            return self._build(corpus_name, identity, chunking, actor, progress)

    def _build(
        self,
        corpus_name: str,
        identity: EmbedderIdentity,
        chunking: Chunking,
        actor: str,
        progress: Progress | None,
    ) -> Version:
        version = self.catalog.create_version(corpus_name, identity, chunking, self.store.name, actor=actor)
        try:
            docs = self.catalog.documents(corpus_name)
            _, _, added, _ = self._sync(version, docs, (), progress)
            self.catalog.record_sync(corpus_name, version.id, added_chunks=added)
        except BaseException as exc:
            self.catalog.finish_version(version.id, "failed", error=str(exc)[:2000])
            raise
        self.catalog.finish_version(version.id, "ready")
        return self.catalog.version(corpus_name, version.number)

    # -- queries ---------------------------------------------------------------------------------
    def query_version(
        self, version: Version, text: str, *, k: int = 5, where: Mapping[str, str] | None = None
    ) -> QueryResult:
        if version.status != "ready":
            raise Conflict(
                f"version {version.number} of `{version.corpus}` is {version.status}", param="version"
            )
        if not isinstance(k, int) or not 1 <= k <= 100:
            raise InvalidRequest("`top_k` is an integer from 1 to 100", param="top_k")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest("`query` is a non-empty string", param="query")
        embedder = self.pool.get(version.embedder)
        vector = embedder.embed([text])[0]
        hits = self.store.query(version.namespace, vector, k, where)
        return QueryResult(version.corpus, version.number, version.namespace, hits)

    def query(
        self, corpus: str, text: str, *, ref: str | int | None = None, k: int = 5,
        where: Mapping[str, str] | None = None,
    ) -> QueryResult:  # fmt: skip
        """Top-``k`` chunks for ``text`` from the version ``ref`` names (alias, number; default production)."""
        return self.query_version(self.catalog.resolve(corpus, ref), text, k=k, where=where)

    # -- evaluation and re-embedding -------------------------------------------------------------
    def evaluate(self, version: Version, labels: evaluation.LabelledSet) -> dict[str, Any]:
        """Score ``version`` on ``labels`` and store the result on the version."""
        embedder = self.pool.get(version.embedder)
        vectors = embedder.embed([q.query for q in labels.queries])
        runs = {
            q.id: evaluation.doc_ranking(
                self.store.query(version.namespace, vectors[i], evaluation.CHUNKS_PER_QUERY)
            )
            for i, q in enumerate(labels.queries)
        }
        result = {
            "report_version": evaluation.REPORT_VERSION, "labels": labels.name, "labels_digest": labels.digest,
            "queries": len(labels.queries), "metrics": evaluation.score(labels, runs),
            "evaluated_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip
        self.catalog.set_evaluation(version.id, result)
        return result

    def reembed(
        self,
        corpus_name: str,
        embedder_source: str,
        labels: evaluation.LabelledSet,
        *,
        dimensions: int | None = None,
        chunking: Chunking | None = None,
        tolerance: float = 0.02,
        alias: str = DEFAULT_ALIAS,
        actor: str = SYSTEM_ACTOR,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Build, evaluate, gate, and maybe swap (module docstring); returns the JSON report."""
        if not 0 <= tolerance < 1:
            raise InvalidRequest(
                "`tolerance` is from 0 to 1 (absolute, on each gated metric)", param="tolerance"
            )
        current = self.catalog.resolve(corpus_name, alias)
        identity = self.pool.identify(embedder_source, dimensions)
        candidate = self.build_version(
            corpus_name, identity, chunking or current.chunking, actor=actor, progress=progress
        )
        base_eval = self.evaluate(current, labels)
        cand_eval = self.evaluate(candidate, labels)
        decision = evaluation.gate(base_eval["metrics"], cand_eval["metrics"], tolerance)
        if decision["passed"]:
            self.catalog.set_alias(
                corpus_name,
                alias,
                candidate.number,
                actor=actor,
                reason=f"re-embed gate: {decision['reason']}",
            )
        return {
            "report_version": evaluation.REPORT_VERSION, "object": "rag.reembed_report", "corpus": corpus_name,
            "alias": alias, "labels": labels.name, "labels_digest": labels.digest,
            "baseline": {"version": current.number, "embedder": current.embedder.as_dict(),
                         "chunking": current.chunking.as_dict(), "metrics": base_eval["metrics"]},
            "candidate": {"version": candidate.number, "embedder": candidate.embedder.as_dict(),
                          "chunking": candidate.chunking.as_dict(), "metrics": cand_eval["metrics"]},
            "gate": decision,
            "decision": "swapped" if decision["passed"] else "kept",
            "alias_version": candidate.number if decision["passed"] else current.number,
        }  # fmt: skip
