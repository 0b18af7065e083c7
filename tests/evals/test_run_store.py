"""Stored eval runs on every metadata database: a tenant finds only its own runs; a submitted run
goes running -> finished (or error with the message)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.evals.store import RunStore
from modelyard.store.db import create_db_engine, migrate


@pytest.fixture
def runs(database_url: str) -> Iterator[RunStore]:
    engine = create_db_engine(database_url)
    migrate(engine)
    yield RunStore(engine)
    engine.dispose()


def test_runs_are_scoped_to_their_tenant(runs: RunStore) -> None:
    doc = {"run_id": "evr_a", "suite": {"name": "s"}, "status": "passed", "results": []}
    runs.add(doc, tenant="acme")
    runs.add({**doc, "run_id": "evr_g"}, tenant="globex")
    assert runs.get("evr_a", tenant="acme") == doc
    assert runs.get("evr_a", tenant="globex") is None
    assert runs.get("evr_a") == doc  # a system admin sees every run
    assert [r["run_id"] for r in runs.list(tenant="globex")] == ["evr_g"]
    assert {r["run_id"] for r in runs.list()} == {"evr_a", "evr_g"}


def test_a_submitted_run_moves_from_running_to_its_document(runs: RunStore) -> None:
    runs.start("evr_1", "s", tenant=None)
    assert runs.get("evr_1") == {"run_id": "evr_1", "suite": {"name": "s"}, "status": "running"}
    runs.finish("evr_1", {"run_id": "evr_1", "suite": {"name": "s"}, "status": "failed"})
    assert runs.get("evr_1")["status"] == "failed"  # type: ignore[index]
    runs.start("evr_2", "s")
    runs.fail("evr_2", "boom")
    assert runs.get("evr_2") == {"run_id": "evr_2", "status": "error", "error": "boom"}
