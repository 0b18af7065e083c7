"""The drift store: sampled prompts, the consumer's named state, monitors and their runs.

Methods are synchronous; call them through a thread from async code. Embeddings are stored as
float16 bytes (half the size of float32; cosine similarities move by about 1e-3) and come back as
float32. A window holds at most ``max_rows`` samples, the newest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from modelyard.errors import Conflict, NotFound
from modelyard.monitoring.drift.models import DriftMonitorRow, DriftRunRow, DriftSampleRow, DriftStateRow
from modelyard.monitoring.drift.monitors import MonitorSpec, Scope, Window, parse_spec

ANY_TENANT = "*"
MAX_WINDOW_ROWS = 20_000


@dataclass(slots=True)
class Sample:
    request_log_id: int
    created_at: datetime
    model: str
    tenant: str
    prompt_version: str | None
    fingerprint: str
    template_id: str
    n_tokens: int
    language: str | None
    odd_chars: bool
    embedder: str
    embedding: np.ndarray  # float32 (dims,)
    response_tokens: int | None = None
    refusal: bool | None = None


@dataclass(slots=True, frozen=True)
class Monitor:
    spec: MonitorSpec
    tenant: str | None
    created_by: str
    created_at: datetime
    last_run_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.spec.as_dict(), "tenant": self.tenant, "created_by": self.created_by,
            "created_at": _utc(self.created_at).isoformat(),
            "last_run_at": _utc(self.last_run_at).isoformat() if self.last_run_at else None,
        }  # fmt: skip


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class DriftStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._writes = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)

    # -- named state ------------------------------------------------------------------------------
    def get_state(self, name: str) -> Any:
        with self._sessions() as s:
            row = s.get(DriftStateRow, name)
            return None if row is None else row.value

    def commit_samples(self, samples: list[Sample], state: dict[str, Any]) -> None:
        """Store ``samples`` and set the named ``state`` values in one transaction."""
        with self._writes.begin() as s:
            if samples:
                s.execute(sa.insert(DriftSampleRow), [_sample_row(x) for x in samples])
            for name, value in state.items():
                row = s.get(DriftStateRow, name)
                if row is None:
                    s.add(DriftStateRow(name=name, value=value))
                else:
                    row.value = value

    # -- samples ----------------------------------------------------------------------------------
    def window(
        self, scope: Scope, start: datetime, end: datetime, *, max_rows: int = MAX_WINDOW_ROWS
    ) -> Window:
        """The samples of ``scope`` created in ``[start, end)``, the newest ``max_rows``."""
        t = DriftSampleRow.__table__.c
        conds = [t.created_at >= start, t.created_at < end]
        for col, value in (
            (t.model, scope.model), (t.tenant, scope.tenant),
            (t.prompt_version, scope.prompt), (t.template_id, scope.template),
        ):  # fmt: skip
            if value is not None:
                conds.append(col == value)
        cols = [t.id, t.embedding, t.n_tokens, t.language, t.odd_chars, t.template_id, t.dims,
                t.response_tokens, t.refusal]  # fmt: skip
        stmt = sa.select(*cols).where(*conds).order_by(t.created_at.desc(), t.id.desc()).limit(max_rows)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return Window.empty()
        dims = rows[0].dims
        rows = [r for r in rows if r.dims == dims]  # an embedder change: keep the newest's rows
        emb = np.frombuffer(b"".join(r.embedding for r in rows), dtype=np.float16).reshape(len(rows), dims)
        return Window(
            ids=np.array([r.id for r in rows], np.int64),
            embeddings=emb.astype(np.float32),
            n_tokens=np.array([r.n_tokens for r in rows], np.int64),
            languages=[r.language for r in rows],
            odd_chars=np.array([bool(r.odd_chars) for r in rows], bool),
            templates=[r.template_id for r in rows],
            response_tokens=np.array(
                [np.nan if r.response_tokens is None else r.response_tokens for r in rows], np.float64
            ),
            refusals=np.array([np.nan if r.refusal is None else float(r.refusal) for r in rows], np.float64),
        )

    def sampled_ids(self, low: int, high: int) -> set[int]:
        """The request-log ids in ``[low, high]`` that already have a sample (a backfill skips them)."""
        t = DriftSampleRow.__table__.c
        stmt = sa.select(t.request_log_id).where(t.request_log_id >= low, t.request_log_id <= high)
        with self.engine.connect() as conn:
            return {int(v) for v in conn.execute(stmt).scalars()}

    def flag_outliers(self, ids: list[int]) -> None:
        if not ids:
            return
        t = DriftSampleRow.__table__.c
        with self._writes.begin() as s:
            for i in range(0, len(ids), 500):
                s.execute(sa.update(DriftSampleRow).where(t.id.in_(ids[i : i + 500])).values(outlier=True))

    def count_samples(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(DriftSampleRow)).scalar_one())

    def prune(self, before: datetime) -> int:
        """Delete samples and runs older than ``before``; the number of samples deleted."""
        with self._writes.begin() as s:
            n = s.execute(sa.delete(DriftSampleRow).where(DriftSampleRow.created_at < before)).rowcount  # type: ignore[attr-defined]
            s.execute(sa.delete(DriftRunRow).where(DriftRunRow.started_at < before))
        return int(n or 0)

    # -- monitors ---------------------------------------------------------------------------------
    def create_monitor(self, spec: dict[str, Any], *, tenant: str | None, actor: str) -> Monitor:
        parsed = parse_spec(spec)
        with self._writes.begin() as s:
            if s.get(DriftMonitorRow, parsed.id) is not None:
                raise Conflict(f"a drift monitor `{parsed.id}` already exists")
            row = DriftMonitorRow(id=parsed.id, tenant_id=tenant, spec=parsed.as_dict(), created_by=actor)
            s.add(row)
        return self._record(row)

    def get_monitor(self, monitor_id: str) -> Monitor:
        with self._sessions() as s:
            row = s.get(DriftMonitorRow, monitor_id)
            if row is None:
                raise NotFound(f"no drift monitor `{monitor_id}`", param="id")
            return self._record(row)

    def list_monitors(self, tenant: str | None = ANY_TENANT) -> list[Monitor]:
        stmt = sa.select(DriftMonitorRow).order_by(DriftMonitorRow.id)
        if tenant != ANY_TENANT:
            stmt = stmt.where(DriftMonitorRow.tenant_id == tenant)
        with self._sessions() as s:
            return [self._record(r) for r in s.scalars(stmt)]

    def delete_monitor(self, monitor_id: str) -> None:
        with self._writes.begin() as s:
            row = s.get(DriftMonitorRow, monitor_id)
            if row is None:
                raise NotFound(f"no drift monitor `{monitor_id}`", param="id")
            s.delete(row)
            s.execute(sa.delete(DriftRunRow).where(DriftRunRow.monitor_id == monitor_id))

    @staticmethod
    def _record(row: DriftMonitorRow) -> Monitor:
        return Monitor(parse_spec(row.spec), row.tenant_id, row.created_by, row.created_at, row.last_run_at)

    # -- runs -------------------------------------------------------------------------------------
    def add_run(self, monitor_id: str, started_at: datetime, result: dict[str, Any], alert: bool) -> int:
        with self._writes.begin() as s:
            run = DriftRunRow(
                monitor_id=monitor_id,
                started_at=started_at,
                status=result["status"],
                alert=alert,
                result=result,
            )
            s.add(run)
            row = s.get(DriftMonitorRow, monitor_id)
            if row is not None:
                row.last_run_at = started_at
            s.flush()
            return int(run.id)

    def runs(self, monitor_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The monitor's runs, newest first, as ``{id, started_at, status, alert, result}``."""
        t = DriftRunRow.__table__.c
        stmt = (
            sa.select(t.id, t.started_at, t.status, t.alert, t.result)
            .where(t.monitor_id == monitor_id)
            .order_by(t.started_at.desc(), t.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {**dict(r._mapping), "started_at": _utc(r.started_at).isoformat()} for r in conn.execute(stmt)
            ]

    def latest_runs(self) -> dict[str, dict[str, Any]]:
        """The newest run of every monitor (for the gauges)."""
        t = DriftRunRow.__table__.c
        newest = sa.select(t.monitor_id, sa.func.max(t.id).label("id")).group_by(t.monitor_id).subquery()
        stmt = sa.select(t.monitor_id, t.status, t.alert, t.result).join(newest, newest.c.id == t.id)
        with self.engine.connect() as conn:
            return {r.monitor_id: dict(r._mapping) for r in conn.execute(stmt)}


def _sample_row(x: Sample) -> dict[str, Any]:
    emb = np.asarray(x.embedding, dtype=np.float16)
    return {
        "request_log_id": x.request_log_id, "created_at": x.created_at, "model": x.model, "tenant": x.tenant,
        "prompt_version": x.prompt_version, "fingerprint": x.fingerprint, "template_id": x.template_id[:220],
        "n_tokens": x.n_tokens, "language": x.language, "odd_chars": x.odd_chars, "outlier": False,
        "response_tokens": x.response_tokens, "refusal": x.refusal,
        "embedder": x.embedder[:256], "dims": int(emb.shape[0]), "embedding": emb.tobytes(),
    }  # fmt: skip
