"""Ownership rules of the job table on SQLite and PostgreSQL: one claim wins, a stale job is taken over
and its old worker can no longer write, a job lost too often fails, and prune keeps unfinished jobs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from modelyard.jobs.records import JobState
from modelyard.jobs.store import JobStore, Progress


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    s = JobStore(database_url)
    s.migrate()
    yield s
    s.close()


def past(s: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=s)


def test_concurrent_claims_have_one_winner(store: JobStore) -> None:
    job = store.create("k", {}, tenant=None, created_by="t")
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(lambda i: store.claim(job.id, f"w{i}", stale_before=past(60), max_attempts=3), range(8))
        )
    winners = [g for g in got if g is not None]
    assert len(winners) == 1 and winners[0].attempts == 1
    assert store.get(job.id).worker_id == winners[0].worker_id


def test_a_stale_job_is_taken_over_and_the_old_worker_is_fenced(store: JobStore) -> None:
    job = store.create("k", {}, tenant="acme", created_by="t")
    assert store.claim(job.id, "w1", stale_before=past(60), max_attempts=3) is not None
    assert store.beat(job.id, "w1", Progress(3, 10, "m", ["one"])).owned
    assert store.claim(job.id, "w2", stale_before=past(60), max_attempts=3) is None  # w1 is alive
    taken = store.claim(job.id, "w2", stale_before=datetime.now(UTC) + timedelta(seconds=1), max_attempts=3)
    assert taken is not None and taken.attempts == 2 and taken.worker_id == "w2"
    assert taken.logs == ["one", "reclaimed from worker w1"]
    beat = store.beat(job.id, "w1", Progress(9, 10))
    assert not beat.owned
    assert not store.finish(job.id, "w1", JobState.SUCCEEDED, Progress(10, 10), result={"from": "w1"})
    assert store.finish(job.id, "w2", JobState.SUCCEEDED, Progress(10, 10), result={"from": "w2"})
    done = store.get(job.id)
    assert done.result == {"from": "w2"} and done.state is JobState.SUCCEEDED and done.finished_at


def test_a_job_lost_too_often_fails(store: JobStore) -> None:
    job = store.create("k", {}, tenant=None, created_by="t")
    future = datetime.now(UTC) + timedelta(seconds=1)
    assert store.claim(job.id, "w1", stale_before=future, max_attempts=2) is not None
    assert store.claim(job.id, "w2", stale_before=future, max_attempts=2) is not None
    assert store.claim(job.id, "w3", stale_before=future, max_attempts=2) is None
    failed = store.get(job.id)
    assert failed.state is JobState.FAILED and "worker lost 2 times (last: w2)" in (failed.error or "")


def test_list_scoping_and_filters(store: JobStore) -> None:
    a = store.create("eval.run", {}, tenant="acme", created_by="t")
    b = store.create("other", {}, tenant="globex", created_by="t")
    c = store.create("eval.run", {}, tenant=None, created_by="t")
    assert [j.id for j in store.list_jobs("acme")] == [a.id]
    assert [j.id for j in store.list_jobs(None)] == [c.id]
    assert {j.id for j in store.list_jobs(None, every_tenant=True)} == {a.id, b.id, c.id}
    assert {j.id for j in store.list_jobs(None, every_tenant=True, kind="eval.run")} == {a.id, c.id}
    store.request_cancel(b.id)
    assert [j.id for j in store.list_jobs(None, every_tenant=True, state=JobState.CANCELLED)] == [b.id]
    assert len(store.list_jobs(None, every_tenant=True, limit=2)) == 2
