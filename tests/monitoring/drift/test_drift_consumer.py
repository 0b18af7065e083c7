"""The consumer and monitor runs against the real metadata store (SQLite and PostgreSQL): request-log
rows are sampled, embedded, fingerprinted and stored; a monitor over them finds the drift, alerts on
the second drifting run, flags outliers on their rows, and says insufficient data over an empty scope."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from drift_stream import AFTER, BEFORE, HashingEmbedder, window
from modelyard.monitoring.drift.consumer import CURSOR, DriftConsumer, backfill_cursor, sampled
from modelyard.monitoring.drift.models import DriftSampleRow
from modelyard.monitoring.drift.runner import run_due, run_monitor
from modelyard.monitoring.drift.store import DriftStore
from modelyard.monitoring.requestlog.records import RequestLogRow
from modelyard.settings import DriftSettings

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
FRENCH = "Bonjour, je voudrais annuler ma commande de demain matin, s'il vous plaît."


class StubDetector:
    def detect(self, text: str) -> str | None:
        return "fr" if "bonjour" in text.lower() else "en"


def _log(engine: Engine, texts: list[str], start: datetime, span: timedelta, **kw) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for i, text in enumerate(texts):
        rows.append({
            "request_id": uuid.uuid4().hex, "created_at": start + span * (i / max(len(texts), 1)),
            "tenant": kw.get("tenant", "acme"), "model": kw.get("model", "chat"), "model_requested": "chat",
            "endpoint": "chat/completions", "stream": False, "status": 200, "latency_ms": 10.0,
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
            "response": kw.get("response", "ok"), "schema_version": 1, "prompt_version": kw.get("prompt_version"),
        })  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.insert(RequestLogRow), rows)


def _consumer(store: DriftStore, **kw) -> DriftConsumer:  # type: ignore[no-untyped-def]
    settings = DriftSettings(sample_rate=kw.pop("sample_rate", 1.0), batch_size=16, cpu_share=1.0, **kw)
    return DriftConsumer(store, settings, embedder=HashingEmbedder(), detector=StubDetector())  # type: ignore[arg-type]


def test_consume_then_monitor_finds_drift_alerts_and_flags_outliers(db: Engine) -> None:
    rng = np.random.default_rng(0)
    _log(db, window(300, BEFORE, rng), NOW - timedelta(days=2), timedelta(days=1))
    current = window(120, AFTER, rng)
    current[5] = " ".join([current[5]] * 50)
    current[6] = FRENCH
    _log(db, current, NOW - timedelta(minutes=50), timedelta(minutes=40))
    _log(db, ["Summarise ticket 42 for me"] * 3, NOW - timedelta(minutes=30), timedelta(minutes=1),
         prompt_version="support:3", response="I’m sorry, but I can’t help with that.")  # fmt: skip
    _log(db, window(5, BEFORE, rng), NOW - timedelta(seconds=1), timedelta(seconds=0.5))  # not settled yet
    store = DriftStore(db)
    consumer = _consumer(store)
    stats = consumer.run_once(NOW)
    assert (stats.read, stats.stored) == (423, 423)
    assert consumer.run_once(NOW).read == 0
    assert consumer.run_once(NOW + timedelta(minutes=1)).stored == 5
    with db.connect() as conn:
        rows = conn.execute(sa.select(DriftSampleRow)).all()
    assert len(rows) == 428 and store.count_samples() == 428
    assert {r.template_id for r in rows if r.prompt_version} == {"prompt:support:3"}
    assert all(r.template_id.startswith(("drain:", "prompt:")) for r in rows)
    assert {r.language for r in rows} == {"en", "fr"}
    assert {(r.response_tokens, r.refusal) for r in rows if r.prompt_version} == {(8, True)}
    assert {(r.response_tokens, r.refusal) for r in rows if not r.prompt_version} == {(1, False)}
    first = next(r for r in rows if r.request_log_id == 1)
    with db.connect() as conn:
        text = conn.execute(sa.select(RequestLogRow.prompt).where(RequestLogRow.id == 1)).scalar_one()[1][
            "content"
        ]
    exact = HashingEmbedder().embed([text])[0]
    stored = np.frombuffer(first.embedding, np.float16).astype(np.float32)
    assert first.dims == 384 and np.dot(exact, stored) > 0.999

    spec = {"id": "chat-en", "scope": {"model": "chat", "tenant": "acme"}, "baseline": {"trailing": "3d"},
            "current": {"last": "1h"}, "expected_languages": ["en"], "interval_s": 600}  # fmt: skip
    monitor = store.create_monitor(spec, tenant="acme", actor="test")
    first_run = run_monitor(store, monitor, NOW)
    assert first_run["status"] == "drift" and not first_run["alert"]
    res = first_run["result"]
    assert res["n_baseline"] == 300 and res["n_current"] == 128
    assert res["outliers"]["long"] >= 1 and res["outliers"]["language"] == 1
    assert res["templates"]["unseen_rate"] > 0.3  # travel and cooking are new
    assert res["output"]["refusal_rate"]["current"] > 0 and res["output"]["refusal_rate"]["baseline"] == 0
    with db.connect() as conn:
        flagged = conn.execute(
            sa.select(DriftSampleRow.request_log_id).where(DriftSampleRow.outlier.is_(True))
        ).scalars().all()  # fmt: skip
    assert {306, 307} <= set(flagged)
    second = run_monitor(store, store.get_monitor("chat-en"), NOW + timedelta(minutes=10))
    assert second["status"] == "drift" and second["alert"]
    assert [r["status"] for r in store.runs("chat-en")] == ["drift", "drift"]
    assert store.latest_runs()["chat-en"]["alert"] is True
    assert run_due(store, NOW + timedelta(minutes=15)) == {}
    assert run_due(store, NOW + timedelta(minutes=25)) == {"chat-en": "drift"}

    empty = store.create_monitor({"id": "nobody", "scope": {"model": "nobody"}}, tenant=None, actor="test")
    assert run_monitor(store, empty, NOW)["status"] == "insufficient_data"
    assert store.prune(NOW - timedelta(days=1)) == 300


def test_sampling_is_stable_and_backfill_does_not_duplicate(db: Engine) -> None:
    rng = np.random.default_rng(1)
    _log(db, window(200, BEFORE, rng), NOW - timedelta(hours=3), timedelta(hours=1))
    store = DriftStore(db)
    stats = _consumer(store, sample_rate=0.5).run_once(NOW)
    assert stats.read == 200 and 70 <= stats.stored <= 130
    with db.connect() as conn:
        ids = conn.execute(sa.select(RequestLogRow.id, RequestLogRow.request_id)).all()
    kept = {i for i, rid in ids if sampled(rid, 0.5)}
    assert store.sampled_ids(0, 10**9) == kept
    assert backfill_cursor(store, NOW - timedelta(days=1)) == 0
    assert store.get_state(CURSOR) == {"last_id": 0}
    again = _consumer(store, sample_rate=1.0).run_once(NOW)
    assert again.read == 200 and again.stored == 200 - len(kept)
    assert store.count_samples() == 200


def test_the_cpu_share_sleeps_between_batches(db: Engine) -> None:
    rng = np.random.default_rng(2)
    _log(db, window(40, BEFORE, rng), NOW - timedelta(hours=1), timedelta(minutes=5))
    store = DriftStore(db)
    slept: list[float] = []
    settings = DriftSettings(sample_rate=1.0, batch_size=16, cpu_share=0.25)
    consumer = DriftConsumer(store, settings, embedder=HashingEmbedder(), detector=StubDetector(),  # type: ignore[arg-type]
                             sleep=slept.append)  # fmt: skip
    stats = consumer.run_once(NOW)
    assert len(slept) == 3 and abs(sum(slept) - 3 * stats.busy_s) < 1e-6
