"""Request-log writer (buffer, batches, drops, redaction, retention) and search, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from modelyard.errors import InvalidRequest
from modelyard.monitoring.requestlog.query import LogQuery, parse_since, search
from modelyard.monitoring.requestlog.records import RequestLogRow, RequestRecord
from modelyard.monitoring.requestlog.writer import RequestLogWriter
from modelyard.settings import RequestLogSettings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def rec(i: int, **kw: object) -> RequestRecord:
    base: dict[str, object] = dict(
        request_id=f"r{i}",
        created_at=NOW - timedelta(minutes=i),
        tenant="acme",
        model="m1",
        model_requested="m1",
        endpoint="chat/completions",
        stream=False,
        status=200,
        latency_ms=12.5,
        prompt=[{"role": "user", "content": f"hello {i}"}],
        response=f"answer {i}",
    )
    base.update(kw)
    return RequestRecord(**base)  # type: ignore[arg-type]


def count(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RequestLogRow)).scalar_one())


async def test_buffer_batches_and_counts_drops(db: Engine) -> None:
    dropped, written = [], []
    w = RequestLogWriter(
        db,
        RequestLogSettings(buffer_size=5, batch_size=2, flush_interval_s=60),
        on_dropped=dropped.append,
        on_written=written.append,
    )
    accepted = [w.enqueue(rec(i)) for i in range(7)]
    assert accepted == [True] * 5 + [False] * 2 and sum(dropped) == 2
    assert count(db) == 0  # nothing is written on the caller's path
    w.start()
    for _ in range(500):  # a full batch wakes the writer without waiting for the 60 s interval
        # the callback runs after the commit, so wait for it rather than for the rows
        if sum(written) == 5:
            break
        await asyncio.sleep(0.02)
    assert written == [2, 2, 1] and count(db) == 5
    w.enqueue(rec(10))
    await w.stop()  # what is left goes out on stop
    assert count(db) == 6 and sum(written) == 6


def test_redaction_and_cut_happen_before_storage(db: Engine) -> None:
    w = RequestLogWriter(db, RequestLogSettings(max_text_chars=20))
    w.write(
        [
            rec(
                1,
                prompt=[{"role": "user", "content": "mail me at jo@example.com please now"}],
                response="card 4111111111111111 and more text here",
                params={"user": "jo@example.com"},
            )
        ]
    )
    [row] = search(db, LogQuery())
    assert row["prompt"] == [{"role": "user", "content": "mail me at [REDA"}]  # "user" counts too
    assert row["response"] == "card [REDACTED:card]"
    assert row["params"] == {"user": "[REDACTED:email]"} and row["schema_version"] == 1


def test_search_filters_and_order(db: Engine) -> None:
    w = RequestLogWriter(db, RequestLogSettings())
    w.write([rec(1), rec(2, tenant="other"), rec(3, model="m2", status=502), rec(90, response="old one")])
    ids = lambda q: [r["request_id"] for r in search(db, q)]  # noqa: E731
    assert ids(LogQuery()) == ["r1", "r2", "r3", "r90"]
    assert ids(LogQuery(tenant="acme", model="m1")) == ["r1", "r90"]
    assert ids(LogQuery(since=NOW - timedelta(minutes=30))) == ["r1", "r2", "r3"]
    assert ids(LogQuery(status=502)) == ["r3"] and ids(LogQuery(contains="old")) == ["r90"]
    assert ids(LogQuery(limit=1)) == ["r1"]
    with pytest.raises(InvalidRequest):
        search(db, LogQuery(limit=0))


def test_retention_deletes_only_old_records(db: Engine) -> None:
    w = RequestLogWriter(db, RequestLogSettings(retention_days=1))
    w.write([rec(1), rec(60 * 24 + 5)])
    assert w.apply_retention(now=NOW) == 1
    assert [r["request_id"] for r in search(db, LogQuery())] == ["r1"]


def test_parse_since() -> None:
    assert parse_since("15m", NOW) == NOW - timedelta(minutes=15)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-11-01T00:00:00") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequest):
        parse_since("yesterday")
