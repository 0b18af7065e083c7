"""RAG benchmark: ingestion throughput with MiniLM, then query latency at 100,000 chunks on both stores.

1. **Ingest**: ``--ingest-chunks`` synthetic one-chunk documents through
   :meth:`~modelyard.rag.service.RagService.ingest` (chunking + MiniLM + LanceDB): chunks per second.
2. **Scale**: ``--chunks`` records with precomputed random unit vectors (384 dims) upserted into each
   store (LanceDB, and PostgreSQL + pgvector from ``pgserver`` with its HNSW index); then ``--queries``
   top-10 queries, p50/p99, through modelyard's store seam (``VectorStore.query``) beside the store's
   own client alone (``lancedb`` search; one ``psycopg`` SQL statement), and the ratio of the two.
   Query embedding is left out here (it is the same for both; step 1 times MiniLM).

    python -m bench.rag --ingest-chunks 2000 --chunks 100000 --queries 300 --out rag.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DIMS = 384


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 3)


def _latency(fn: Any, vectors: np.ndarray) -> dict[str, float]:
    for v in vectors[:10]:
        fn(v)  # warm-up
    times = []
    for v in vectors:
        t = time.perf_counter()
        fn(v)
        times.append(time.perf_counter() - t)
    return {
        "p50_ms": _pct(times, 0.5),
        "p99_ms": _pct(times, 0.99),
        "mean_ms": round(statistics.mean(times) * 1000, 3),
    }


def bench_ingest(n: int, tmp: Path) -> dict[str, Any]:
    from modelyard.rag.catalog import Catalog
    from modelyard.rag.chunking import Chunking
    from modelyard.rag.embedders import EmbedderPool
    from modelyard.rag.lance import LanceStore
    from modelyard.rag.service import RagService
    from modelyard.rag.sources import SourceDocument
    from modelyard.store.db import create_db_engine, migrate

    engine = create_db_engine(f"sqlite:///{tmp / 'ingest.db'}")
    migrate(engine)
    pool = EmbedderPool()
    svc = RagService(Catalog(engine), LanceStore(tmp / "ingest-lance"), pool)
    svc.create_corpus("bench", "packaged:all-minilm-l6-v2", Chunking(128, 16))
    pool.identify("packaged:all-minilm-l6-v2")  # load outside the timed part
    rng = np.random.default_rng(0)
    words = [f"term{i}" for i in range(5000)]
    docs = [SourceDocument(f"d{i}", " ".join(rng.choice(words, 24)), {"n": str(i % 10)}) for i in range(n)]
    report = svc.ingest("bench", docs)
    again = svc.ingest("bench", docs)
    engine.dispose()
    return {
        "chunks": report.chunks_embedded, "seconds": report.seconds, "chunks_per_s": report.as_dict()["chunks_per_s"],
        "reingest_unchanged_seconds": again.seconds, "reingest_chunks_embedded": again.chunks_embedded,
    }  # fmt: skip


def _fill(store: Any, vectors: np.ndarray, batch: int = 2000) -> float:
    from modelyard.rag.vectors import Record

    store.create_namespace("bench", DIMS)
    t = time.perf_counter()
    for start in range(0, len(vectors), batch):
        store.upsert("bench", [
            Record(f"c{i}", f"d{i // 4}", f"chunk {i}", vectors[i], {"shard": str(i % 8)})
            for i in range(start, min(start + batch, len(vectors)))
        ])  # fmt: skip
    return time.perf_counter() - t


def bench_scale(n: int, n_queries: int, tmp: Path) -> dict[str, Any]:
    from modelyard.rag.lance import LanceStore
    from modelyard.rag.pg import LocalPostgres, PgVectorStore

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((n_queries, DIMS)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    out: dict[str, Any] = {}

    lance = LanceStore(tmp / "lance")
    seconds = _fill(lance, vectors)
    table = lance._table("bench")
    seam = _latency(lambda v: lance.query("bench", v, 10), queries)
    raw = _latency(lambda v: table.search(v).distance_type("cosine").limit(10).to_list(), queries)
    out["lancedb"] = {"index": "none (exact scan)", "insert_s": round(seconds, 2),
                      "insert_per_s": round(n / seconds), "seam": seam, "client": raw,
                      "overhead_p50": round(seam["p50_ms"] / raw["p50_ms"], 3)}  # fmt: skip

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="modelyard-bench-pg-")) / "data", port)
    server.start()
    try:
        pg = PgVectorStore(server.url, schema="bench")
        seconds = _fill(pg, vectors)
        import psycopg
        from pgvector.psycopg import register_vector

        conn = psycopg.connect(server.url, autocommit=True)
        register_vector(conn)
        conn.execute("SET hnsw.ef_search = 40")
        sql = 'SELECT id, doc_id, text, metadata, 1 - (embedding <=> %s) FROM "bench"."bench" ORDER BY embedding <=> %s LIMIT 10'
        seam = _latency(lambda v: pg.query("bench", v, 10), queries)
        raw = _latency(lambda v: conn.execute(sql, (v, v)).fetchall(), queries)
        exact = [set(np.argsort(-(vectors @ q))[:10]) for q in queries[:50]]
        got = [{int(h.id[1:]) for h in pg.query("bench", q, 10)} for q in queries[:50]]
        recall = statistics.mean(len(a & b) / 10 for a, b in zip(exact, got, strict=True))
        out["pgvector"] = {"index": "hnsw (m=16, ef_construction=64, ef_search=40)", "insert_s": round(seconds, 2),
                           "insert_per_s": round(n / seconds), "seam": seam, "client": raw,
                           "overhead_p50": round(seam["p50_ms"] / raw["p50_ms"], 3),
                           "recall@10_vs_exact": round(recall, 3)}  # fmt: skip
        conn.close()
        pg.close()
    finally:
        server.remove()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ingest-chunks", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-rag-"))
    report = {
        "report_version": 1, "machine": platform.processor() or platform.machine(),
        "ingest": bench_ingest(args.ingest_chunks, tmp) if args.ingest_chunks else None,
        "scale": {"chunks": args.chunks, "dimensions": DIMS, "queries": args.queries,
                  **bench_scale(args.chunks, args.queries, tmp)},
    }  # fmt: skip
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
