"""The experiment store: experiments, exposures and feedback beside the registry's tables.

Experiment writes take the registry's write lock and bump its revision (so every process's
:class:`~modelyard.experiments.layer.ExperimentBook` reloads within ``registry_poll_s``) and write
their audit row in the same transaction. Starting an experiment checks, under that lock, that no other
experiment is running or paused on the same route and unit (409 otherwise). Exposures and feedback are
appended without the lock. Methods are synchronous; call them through a thread from async code.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import Conflict, InvalidRequest, NotFound
from modelyard.experiments import assignment
from modelyard.experiments.models import ExperimentRow, ExposureRow, FeedbackRow
from modelyard.experiments.records import (
    METRICS,
    Experiment,
    ExperimentNotFound,
    Status,
    Variant,
    check_metric,
    check_name,
    check_transition,
    check_unit,
    parse_variants,
)
from modelyard.registry.models import RegistryState
from modelyard.store.audit import SYSTEM_ACTOR, audit

ANY_TENANT = "*"
TargetCheck = Callable[[Variant, str, str, str | None], None]  # (variant, route, route_kind, tenant)
OCCUPYING = (Status.RUNNING.value, Status.PAUSED.value)


@dataclass(slots=True, frozen=True)
class Exposure:
    experiment_id: str
    variant: str
    unit: str
    request_id: str
    response_id: str | None
    tenant: str | None
    created_at: datetime


class ExperimentStore:
    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)

    # -- experiments ------------------------------------------------------------------------------
    def create(
        self,
        spec: dict[str, Any],
        *,
        tenant: str | None,
        actor: str = SYSTEM_ACTOR,
        check_target: TargetCheck | None = None,
    ) -> Experiment:
        """A draft experiment from its JSON ``spec``; validation errors change nothing."""
        unknown = set(spec) - {
            "id", "route", "route_kind", "unit", "salt", "variants", "traffic_percent",
            "primary_metric", "guardrails", "description", "tenant", "rollout", "flag",
        }  # fmt: skip
        if unknown:
            raise InvalidRequest(f"unknown field `{sorted(unknown)[0]}`", param=sorted(unknown)[0])
        eid = check_name(spec.get("id") or f"exp-{secrets.token_hex(4)}", "id")
        route = spec.get("route")
        if not isinstance(route, str) or not route or len(route) > 256:
            raise InvalidRequest("`route` is the model name clients call, or a prompt id", param="route")
        kind = spec.get("route_kind", "model")
        if kind not in ("model", "prompt"):
            raise InvalidRequest("`route_kind` is `model` or `prompt`", param="route_kind")
        unit = check_unit(spec.get("unit", "user"))
        variants = parse_variants(spec.get("variants"))
        share = spec.get("traffic_percent", 100)
        if not isinstance(share, int) or isinstance(share, bool) or not 1 <= share <= 100:
            raise InvalidRequest("`traffic_percent` is an integer from 1 to 100", param="traffic_percent")
        primary = check_metric(spec.get("primary_metric", "feedback"), "primary_metric")
        guardrails = spec.get("guardrails", ["error_rate", "latency_ms"])
        if not isinstance(guardrails, list):
            raise InvalidRequest(
                f"`guardrails` is a list of metrics ({', '.join(METRICS)})", param="guardrails"
            )
        guardrails = [check_metric(g, "guardrails") for g in guardrails if g != primary]
        for v in variants:
            if check_target is not None:
                check_target(v, route, kind, tenant)
            if kind == "model" and v.prompt_version is not None:
                raise InvalidRequest("a prompt version needs a prompt route", param="variants")
        flag = spec.get("flag")
        if flag is not None and (not isinstance(flag, str) or not 0 < len(flag) <= 128):
            raise InvalidRequest("`flag` is an OpenFeature flag key (1-128 characters)", param="flag")
        salt = spec.get("salt") or eid
        if not isinstance(salt, str) or len(salt) > 128:
            raise InvalidRequest("`salt` is a string of at most 128 characters", param="salt")
        ranges = assignment.layout([(v.name, v.weight) for v in variants])
        with self._write() as session:
            if session.get(ExperimentRow, eid) is not None:
                raise Conflict(f"an experiment `{eid}` already exists")
            row = ExperimentRow(
                id=eid, tenant_id=tenant, route=route, route_kind=kind, unit=unit, salt=salt,
                status=Status.DRAFT.value, traffic_percent=share,
                variants=[v.as_dict() for v in variants], layout=[list(r) for r in ranges],
                primary_metric=primary, guardrails=guardrails,
                description=str(spec.get("description") or "")[:4000], created_by=actor,
                rollout=spec.get("rollout"),
                flag=flag,
            )  # fmt: skip
            session.add(row)
            audit(session, actor, "experiment.create", eid, route=route, tenant=tenant)
            self._bump(session)
            session.flush()
            return _record(row)

    def get(self, eid: str, tenant: str | None = ANY_TENANT) -> Experiment:
        """The experiment ``eid``; one that ``tenant`` does not own is a 404 (system admins: ``*``)."""
        with self._read() as session:
            return _record(self._row(session, eid, tenant))

    def list_experiments(self, tenant: str | None = ANY_TENANT) -> list[Experiment]:
        with self._read() as session:
            q = select(ExperimentRow).order_by(ExperimentRow.created_at)
            if tenant != ANY_TENANT:
                q = q.where(ExperimentRow.tenant_id == tenant)
            return [_record(r) for r in session.scalars(q)]

    def active(self) -> list[Experiment]:
        """The running experiments (what the layer assigns from)."""
        with self._read() as session:
            q = select(ExperimentRow).where(ExperimentRow.status == Status.RUNNING.value)
            return [_record(r) for r in session.scalars(q)]

    def transition(
        self, eid: str, target: Status, *, tenant: str | None = ANY_TENANT, actor: str = SYSTEM_ACTOR
    ) -> Experiment:
        with self._write() as session:
            row = self._row(session, eid, tenant)
            check_transition(Status(row.status), target)
            if target is Status.RUNNING:
                clash = session.scalars(
                    select(ExperimentRow.id).where(
                        ExperimentRow.route == row.route,
                        ExperimentRow.route_kind == row.route_kind,
                        ExperimentRow.unit == row.unit,
                        ExperimentRow.status.in_(OCCUPYING),
                        ExperimentRow.id != row.id,
                    )
                ).first()
                if clash is not None:
                    raise Conflict(
                        f"the experiment `{clash}` already runs on route `{row.route}` by `{row.unit}`;"
                        " stop it first"
                    )
                row.started_at = row.started_at or datetime.now(UTC)
            if target in (Status.STOPPED, Status.CONCLUDED):
                row.ended_at = row.ended_at or datetime.now(UTC)
            row.status = target.value
            audit(session, actor, f"experiment.{target.value}", eid)
            self._bump(session)
            session.flush()
            return _record(row)

    def set_weights(
        self, eid: str, weights: dict[str, int], *, tenant: str | None = ANY_TENANT, actor: str = SYSTEM_ACTOR
    ) -> Experiment:
        """New weights, laid out so that the fewest units change variant (:func:`relayout`)."""
        with self._write() as session:
            row = self._row(session, eid, tenant)
            if Status(row.status) in (Status.STOPPED, Status.CONCLUDED):
                raise Conflict(f"the experiment `{eid}` is {row.status}")
            old = {v["name"]: v for v in row.variants}
            if set(weights) != set(old):
                raise InvalidRequest(f"give a weight for each variant: {', '.join(old)}", param="weights")
            variants = parse_variants([{**old[n], "weight": weights[n]} for n in old])
            ranges = assignment.relayout([tuple(r) for r in row.layout], weights)  # type: ignore[misc]
            row.variants = [v.as_dict() for v in variants]
            row.layout = [list(r) for r in ranges]
            audit(session, actor, "experiment.weights", eid, weights=weights)
            self._bump(session)
            session.flush()
            return _record(row)

    def update_rollout(
        self,
        eid: str,
        rollout: dict[str, Any],
        *,
        weights: dict[str, int] | None = None,
        status: Status | None = None,
        actor: str = SYSTEM_ACTOR,
        action: str = "rollout.step",
    ) -> Experiment:
        """Store a canary's new state, with its new weights (laid out by :func:`relayout`) and status."""
        with self._write() as session:
            row = self._row(session, eid, ANY_TENANT)
            if weights is not None:
                variants = parse_variants([{**v, "weight": weights[v["name"]]} for v in row.variants])
                ranges = assignment.relayout([tuple(r) for r in row.layout], weights)  # type: ignore[misc]
                row.variants = [v.as_dict() for v in variants]
                row.layout = [list(r) for r in ranges]
            if status is not None:
                check_transition(Status(row.status), status)
                row.status = status.value
                if status in (Status.STOPPED, Status.CONCLUDED):
                    row.ended_at = datetime.now(UTC)
            row.rollout = rollout
            audit(session, actor, action, eid, state=rollout.get("state"), step=rollout.get("step"))
            self._bump(session)
            session.flush()
            return _record(row)

    # -- exposures and feedback -------------------------------------------------------------------
    def record_exposures(self, exposures: Iterable[Exposure]) -> None:
        rows = [
            {
                "experiment_id": e.experiment_id, "variant": e.variant, "unit": e.unit[:256],
                "request_id": e.request_id, "response_id": e.response_id, "tenant_id": e.tenant,
                "created_at": e.created_at,
            }
            for e in exposures
        ]  # fmt: skip
        if rows:
            with self._write_sessions.begin() as session:
                session.execute(insert(ExposureRow), rows)

    def exposures(self, eid: str, since: datetime | None = None) -> list[Exposure]:
        with self._read() as session:
            q = select(ExposureRow).where(ExposureRow.experiment_id == eid).order_by(ExposureRow.id)
            if since is not None:
                q = q.where(ExposureRow.created_at >= since)
            return [
                Exposure(r.experiment_id, r.variant, r.unit, r.request_id, r.response_id, r.tenant_id,
                         _utc(r.created_at))
                for r in session.scalars(q)
            ]  # fmt: skip

    def add_feedback(
        self, response_id: str, *, tenant: str | None, raw: str, score: float, comment: str | None, actor: str
    ) -> dict[str, Any]:
        """Feedback on ``response_id``, which must be a response of ``tenant`` (404 otherwise, in the
        same words whether it does not exist or belongs to another tenant)."""
        with self._write_sessions.begin() as session:
            exposure = session.scalars(
                select(ExposureRow).where(ExposureRow.response_id == response_id).limit(1)
            ).first()
            if exposure is None or exposure.tenant_id != tenant:
                raise NotFound(f"no response `{response_id}` to give feedback on", param="response_id")
            row = FeedbackRow(
                response_id=response_id, request_id=exposure.request_id, tenant_id=tenant,
                kind="thumbs" if raw in ("up", "down") else "score", score=score, raw=raw,
                comment=comment, created_by=actor,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return {"id": f"fb-{row.id}", "object": "feedback", "response_id": response_id,
                    "experiment": exposure.experiment_id, "variant": exposure.variant, "score": score}  # fmt: skip

    def feedback(self, request_ids: Iterable[str]) -> dict[str, float]:
        """The mean feedback score per request id (of those given)."""
        ids = list(request_ids)
        sums: dict[str, list[float]] = {}
        with self._read() as session:
            for start in range(0, len(ids), 500):
                q = select(FeedbackRow.request_id, FeedbackRow.score).where(
                    FeedbackRow.request_id.in_(ids[start : start + 500])
                )
                for rid, score in session.execute(q):
                    sums.setdefault(rid, []).append(score)
        return {rid: sum(s) / len(s) for rid, s in sums.items()}

    # -- internals --------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_sessions.begin() as session:
            session.execute(select(RegistryState.id).where(RegistryState.id == 1).with_for_update())
            yield session

    @staticmethod
    def _bump(session: Session) -> None:
        session.execute(
            update(RegistryState).where(RegistryState.id == 1).values(revision=RegistryState.revision + 1)
        )

    @staticmethod
    def _row(session: Session, eid: str, tenant: str | None) -> ExperimentRow:
        row = session.get(ExperimentRow, eid)
        if row is None or (tenant != ANY_TENANT and row.tenant_id != tenant):
            raise ExperimentNotFound(f"no experiment `{eid}`", param="id")
        return row


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _record(row: ExperimentRow) -> Experiment:
    return Experiment(
        id=row.id, tenant=row.tenant_id, route=row.route, route_kind=row.route_kind, unit=row.unit,
        salt=row.salt, status=Status(row.status), traffic_percent=row.traffic_percent,
        variants=tuple(Variant(**v) for v in row.variants),
        layout=tuple((int(a), int(b), str(n)) for a, b, n in row.layout),
        primary_metric=row.primary_metric, guardrails=tuple(row.guardrails),
        description=row.description, created_by=row.created_by, created_at=_utc(row.created_at),
        started_at=_utc(row.started_at) if row.started_at else None,
        ended_at=_utc(row.ended_at) if row.ended_at else None,
        rollout=row.rollout,
        flag=row.flag,
    )  # fmt: skip
