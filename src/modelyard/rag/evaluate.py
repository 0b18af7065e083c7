"""Retrieval evaluation of an index version on a labelled set, and the re-embed gate.

A labelled set is JSONL, one ``{"id", "query", "relevant": [doc ids]}`` per line (binary relevance).
A version's run ranks documents by their best chunk's score (top 50 chunks, first 10 documents kept);
the metrics come from ``ir-measures`` (MacAvaney et al., ECIR 2022, backed by ``pytrec_eval``):
``recall@5``/``recall@10`` (R@k), ``mrr`` (RR), ``ndcg@10`` (nDCG@10, Järvelin & Kekäläinen 2002) and
``hit@1``/``hit@5`` (Success@k). The report is a JSON document with a ``report_version`` field.

The gate (:func:`gate`) accepts a candidate when, for each of ``ndcg@10`` and ``recall@5``, it scores
at least ``baseline - tolerance`` (an absolute tolerance on the same labelled set; no significance test
is claimed: with 50-odd queries the tolerance is a policy, set per corpus).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest

REPORT_VERSION = 1
GATE_METRICS = ("ndcg@10", "recall@5")
CHUNKS_PER_QUERY = 50
DOCS_PER_QUERY = 10


@dataclass(slots=True, frozen=True)
class LabelledQuery:
    id: str
    query: str
    relevant: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class LabelledSet:
    name: str
    digest: str
    queries: tuple[LabelledQuery, ...]

    @classmethod
    def load(cls, path: Path) -> LabelledSet:
        raw = path.read_bytes()
        queries = []
        for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            rel = obj.get("relevant")
            if not isinstance(obj.get("id"), str) or not isinstance(obj.get("query"), str) or not rel:
                raise InvalidRequest(f"{path}:{n}: a labelled query has `id`, `query` and `relevant`")
            queries.append(LabelledQuery(obj["id"], obj["query"], tuple(rel)))
        if not queries:
            raise InvalidRequest(f"{path} holds no labelled queries")
        return cls(path.name, hashlib.sha256(raw).hexdigest()[:16], tuple(queries))


def doc_ranking(hits: list[Any]) -> list[tuple[str, float]]:
    """Documents by their best chunk, best first, at most ``DOCS_PER_QUERY``."""
    best: dict[str, float] = {}
    for h in hits:
        if h.doc_id not in best or h.score > best[h.doc_id]:
            best[h.doc_id] = h.score
    return sorted(best.items(), key=lambda kv: -kv[1])[:DOCS_PER_QUERY]


def score(labels: LabelledSet, runs: dict[str, list[tuple[str, float]]]) -> dict[str, float]:
    """The metrics of a run (query id -> ranked (doc id, score)) against ``labels``."""
    import ir_measures
    from ir_measures import RR, Qrel, R, ScoredDoc, Success, nDCG

    names = {
        "recall@5": R @ 5, "recall@10": R @ 10, "mrr": RR, "ndcg@10": nDCG @ 10,
        "hit@1": Success @ 1, "hit@5": Success @ 5,
    }  # fmt: skip
    qrels = [Qrel(q.id, d, 1) for q in labels.queries for d in q.relevant]
    run = [
        ScoredDoc(qid, doc, float(len(ranked) - i))  # rank-based scores: ties never reorder documents
        for qid, ranked in runs.items()
        for i, (doc, _) in enumerate(ranked)
    ]
    agg = ir_measures.calc_aggregate(list(names.values()), qrels, run)
    return {name: round(float(agg.get(m, 0.0)), 6) for name, m in names.items()}


def gate(baseline: dict[str, float], candidate: dict[str, float], tolerance: float) -> dict[str, Any]:
    checks = {}
    for m in GATE_METRICS:
        delta = candidate[m] - baseline[m]
        checks[m] = {
            "baseline": baseline[m], "candidate": candidate[m], "delta": round(delta, 6),
            "passed": delta >= -tolerance,
        }  # fmt: skip
    failed = [m for m, c in checks.items() if not c["passed"]]
    reason = (
        "within tolerance on " + ", ".join(GATE_METRICS)
        if not failed
        else "; ".join(
            f"{m} {checks[m]['candidate']:.4f} < {checks[m]['baseline']:.4f} - {tolerance}" for m in failed
        )
    )
    return {"tolerance": tolerance, "metrics": checks, "passed": not failed, "reason": reason}
