"""``modelyard tasks list|run`` as a CronJob runs it: a real subprocess against the metadata store,
with the task's lease free (it runs) and held by another process (exit 3, nothing done)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from modelyard.errors import NotFound
from modelyard.jobs.leases import PostgresLease
from modelyard.jobs.models import JobRow
from modelyard.jobs.records import JobState
from modelyard.jobs.store import JobStore, Progress
from modelyard.store.db import create_db_engine

SRC = Path(__file__).resolve().parents[2] / "src"


def cli(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "MODELYARD_DATABASE_URL": database_url,
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_JOBS__RETENTION_DAYS": "1",
    }
    env.pop("MODELYARD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "tasks", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def finished_job(store: JobStore, database_url: str, age: timedelta = timedelta(0)) -> str:
    job = store.create("test.echo", {}, tenant=None, created_by="test")
    assert store.claim(job.id, "w", stale_before=datetime.now(UTC), max_attempts=1) is not None
    assert store.finish(job.id, "w", JobState.SUCCEEDED, Progress(), result={})
    if age:
        engine = create_db_engine(database_url)
        with engine.begin() as conn:
            conn.execute(
                update(JobRow).where(JobRow.id == job.id).values(finished_at=datetime.now(UTC) - age)
            )
        engine.dispose()
    return job.id


async def test_tasks_run_prunes_under_the_lease(database_url: str, tmp_path: Path) -> None:
    store = JobStore(database_url)
    store.migrate()
    try:
        listed = cli(database_url, tmp_path, "list")
        assert listed.returncode == 0 and "jobs.prune" in listed.stdout and "jobs.requeue" in listed.stdout
        old = finished_job(store, database_url, timedelta(days=2))
        queued = store.create("test.echo", {}, tenant=None, created_by="test").id
        fresh = finished_job(store, database_url, timedelta(hours=20))
        if database_url.startswith("postgresql"):
            other = PostgresLease(database_url)  # another process's runner holds the task
            assert await other.acquire("jobs.prune", 10) is not None
            try:
                held = cli(database_url, tmp_path, "run", "jobs.prune")
                assert held.returncode == 3, held.stderr
                assert "lease held" in held.stderr
                assert store.get(old).state is JobState.SUCCEEDED
            finally:
                await other.close()
        ran = cli(database_url, tmp_path, "run", "jobs.prune")
        assert ran.returncode == 0, ran.stderr
        with pytest.raises(NotFound):
            store.get(old)
        assert store.get(fresh).state is JobState.SUCCEEDED  # younger than the retention
        assert store.get(queued).state is JobState.QUEUED  # never pruned while unfinished
        bad = cli(database_url, tmp_path, "run", "no.such.task")
        assert bad.returncode == 2 and "no periodic task" in bad.stderr
    finally:
        store.close()
