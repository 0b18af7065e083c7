"""RAG with versioned vector stores (issue 14, first slice).

The tree, one stage each:

* :mod:`~modelyard.rag.vectors` — the vector store seam (:class:`~modelyard.rag.vectors.VectorStore`);
  :mod:`~modelyard.rag.lance` (embedded default, LanceDB) and :mod:`~modelyard.rag.pg`
  (scaled, PostgreSQL + pgvector) implement it.
* :mod:`~modelyard.rag.embedders` — embedder identity (name, source, digest, dimensions,
  normalisation) and the pool that loads an embedder only when its identity matches.
* :mod:`~modelyard.rag.chunking` — token-based chunks with the embedder's own tokenizer.
* :mod:`~modelyard.rag.models` / :mod:`~modelyard.rag.catalog` — corpora, index versions, aliases,
  documents and chunk hashes in the metadata database (migration ``0010_rag``).
* :mod:`~modelyard.rag.service` — ingest, query through an alias, re-embed behind an accuracy gate.
* :mod:`~modelyard.rag.evaluate` — retrieval metrics per version (``ir-measures``).
* :mod:`~modelyard.rag.admin_api` and :mod:`~modelyard.rag.cli` — the ``/admin/rag`` API and
  ``modelyard rag``.

Nothing here imports ``lancedb``, ``psycopg``/``pgvector`` or ``ir_measures`` at import time: a server
that never touches RAG never loads them.
"""
