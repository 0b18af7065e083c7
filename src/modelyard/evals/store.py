"""Stored eval runs (table ``eval_runs``): one row per run, holding its whole run document.

A CLI run is inserted once, complete, after it finished (a failed or invalid run stores nothing). A
submitted run (``POST /admin/evals``) is inserted as ``running`` after its suite validated, then
finished with the document (or ``error`` and a message). ``get(run_id, tenant=T)`` only finds runs of
tenant T (and None, a system admin, finds every run).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from modelyard.registry.dataset_tables import EvalRunRow


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, doc: dict[str, Any], *, tenant: str | None = None) -> None:
        with self._engine.execution_options(write=True).begin() as conn:
            conn.execute(
                sa.insert(EvalRunRow).values(
                    id=doc["run_id"],
                    suite=doc["suite"]["name"],
                    tenant=tenant,
                    status=doc["status"],
                    created_at=datetime.now(UTC),
                    document=doc,
                )
            )

    def start(self, run_id: str, suite: str, *, tenant: str | None = None) -> None:
        with self._engine.execution_options(write=True).begin() as conn:
            conn.execute(
                sa.insert(EvalRunRow).values(
                    id=run_id,
                    suite=suite,
                    tenant=tenant,
                    status="running",
                    created_at=datetime.now(UTC),
                    document=None,
                )
            )

    def finish(self, run_id: str, doc: dict[str, Any]) -> None:
        with self._engine.execution_options(write=True).begin() as conn:
            conn.execute(
                sa.update(EvalRunRow)
                .where(EvalRunRow.id == run_id)
                .values(status=doc["status"], document=doc)
            )

    def fail(self, run_id: str, message: str) -> None:
        doc = {"run_id": run_id, "status": "error", "error": message}
        with self._engine.execution_options(write=True).begin() as conn:
            conn.execute(
                sa.update(EvalRunRow).where(EvalRunRow.id == run_id).values(status="error", document=doc)
            )

    def get(self, run_id: str, *, tenant: str | None = None) -> dict[str, Any] | None:
        """The run document (``{"run_id", "status": "running"}`` while it runs), or None."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(EvalRunRow).where(EvalRunRow.id == run_id)).first()
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        return row.document or {"run_id": row.id, "suite": {"name": row.suite}, "status": row.status}

    def list(self, *, tenant: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        q = sa.select(
            EvalRunRow.id, EvalRunRow.suite, EvalRunRow.status, EvalRunRow.created_at, EvalRunRow.tenant
        )
        if tenant is not None:
            q = q.where(EvalRunRow.tenant == tenant)
        with self._engine.connect() as conn:
            rows = conn.execute(q.order_by(EvalRunRow.created_at.desc()).limit(limit)).all()
        return [
            {
                "run_id": r.id,
                "suite": r.suite,
                "status": r.status,
                "tenant": r.tenant,
                "created_at": (
                    r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
                ).isoformat(),
            }
            for r in rows
        ]
