"""Rollout fixtures shared by the canary tests (importable as ``canary_traffic``): a registry model
``chat`` with versions and a ``production`` alias, and exposures with their request-log rows (and
feedback) written as the experiment layer and the request log write them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from modelyard.experiments.canary import CANARY, STABLE
from modelyard.experiments.store import ExperimentStore, Exposure
from modelyard.monitoring.requestlog.records import SCHEMA_VERSION, RequestLogRow
from modelyard.registry import Registry


def register(registry: Registry, versions: int = 2) -> None:
    registry.register_model("chat")
    for _ in range(versions):
        registry.create_version(
            "chat", artifact_uri="https://example.com/chat-1", architecture="llama", context_length=128
        )
    registry.set_alias("chat", "production", 1)


def traffic(
    registry: Registry,
    store: ExperimentStore,
    eid: str,
    at: datetime,
    n: int,
    *,
    canary_status: int = 200,
    canary_ms: float = 100.0,
    canary_ttft_ms: float | None = None,
    feedback: tuple[float, float] | None = None,
    seq: list[int] | None = None,
) -> None:
    """``n`` requests per variant at ``at``: exposures and their request-log rows. With
    ``canary_ttft_ms`` the requests are streamed (stable's first token at 50 ms); with ``feedback``
    (stable's score, the canary's) each response is rated."""
    seq = seq if seq is not None else [0]
    exposures, logs = [], []
    stream = canary_ttft_ms is not None
    variants = ((STABLE, 200, 100.0, 50.0), (CANARY, canary_status, canary_ms, canary_ttft_ms or 50.0))
    for variant, status, ms, ttft in variants:
        for i in range(n):
            seq[0] += 1
            rid = f"{eid}-{seq[0]}"
            exposures.append(Exposure(eid, variant, rid, rid, f"chatcmpl-{rid}", None, at))
            logs.append({
                "request_id": rid, "created_at": at, "tenant": "t", "model": "chat", "model_requested": "chat",
                "endpoint": "chat", "stream": stream, "status": status, "latency_ms": ms + (i % 7),
                "ttft_ms": ttft + (i % 5) if stream else None,
                "schema_version": SCHEMA_VERSION, "completion_tokens": 3, "prompt_tokens": 2,
            })  # fmt: skip
    store.record_exposures(exposures)
    with registry.engine.begin() as conn:
        conn.execute(insert(RequestLogRow), logs)
    if feedback is not None:
        for e in exposures:
            score = feedback[0] if e.variant == STABLE else feedback[1]
            store.add_feedback(
                f"chatcmpl-{e.request_id}",
                tenant=None,
                raw=str(int(score)),
                score=score,
                comment=None,
                actor="t",
            )
