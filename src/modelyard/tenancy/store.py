"""``TenancyStore``: tenants, keys, adapters, the usage ledger and the audit log in the metadata store.

Synchronous (SQLAlchemy); async callers run it in the thread pool. Every admin change writes its
audit entry in the same transaction as the change, and after its commit calls every ``on_change``
hook (the auth-epoch bump of ``principal_cache``). ``authenticate`` reads the key row on every call;
the gateway fronts it with :class:`~modelyard.tenancy.principal_cache.PrincipalCache`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import AuthenticationError, Conflict, InvalidRequest, NotFound
from modelyard.store.audit import audit
from modelyard.store.db import create_db_engine
from modelyard.store.db import migrate as migrate_engine
from modelyard.tenancy.keys import key_digest, mint_key
from modelyard.tenancy.models import Adapter, ApiKey, AuditEntry, Tenant, UsageRecord, now
from modelyard.tenancy.records import AdapterInfo, KeyInfo, Principal, Scope, TenantInfo, Usage

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SCOPES = {s.value for s in Scope}
GROUPS = ("tenant", "model", "day", "key", "adapter", "status")


def check_id(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise InvalidRequest(
            f"{kind} {value!r} is not valid: use 1-63 lowercase letters, digits, '-' or '_'", param=kind
        )
    return value


def _aware(dt: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC.
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def _tenant(row: Tenant) -> TenantInfo:
    return TenantInfo(
        row.id,
        list(row.models),
        dict(row.limits),
        dict(row.budget),
        row.disabled,
        _aware(row.created_at),  # type: ignore[arg-type]
    )


def _key(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        row.id,
        row.tenant_id,
        row.name,
        row.prefix,
        list(row.scopes),
        dict(row.limits),
        _aware(row.expires_at),
        _aware(row.revoked_at),
        _aware(row.created_at),  # type: ignore[arg-type]
    )


def _adapter(row: Adapter) -> AdapterInfo:
    return AdapterInfo(row.id, row.tenant_id, row.base_model, row.name, row.path, _aware(row.created_at))  # type: ignore[arg-type]


_K, _T = ApiKey.__table__.c, Tenant.__table__.c
# Built once: authentication runs on every request. Core, not ORM (no row objects to build).
_AUTH_QUERY = (
    select(
        _K.id,
        _K.tenant_id,
        _K.scopes,
        _K.limits,
        _K.expires_at,
        _K.revoked_at,
        _T.models,
        _T.limits,
        _T.budget,
        _T.disabled,
    )
    .select_from(ApiKey.__table__.outerjoin(Tenant.__table__, _K.tenant_id == _T.id))
    .where(_K.key_hash == bindparam("digest"))
)
_EPOCH_SQL = f"SELECT coalesce(max(id), 0) FROM {AuditEntry.__tablename__}"


class TenancyStore:
    def __init__(self, database_url: str, server_secret: bytes, *, engine: Engine | None = None) -> None:
        self._engine = engine or create_db_engine(database_url)
        self._owns_engine = engine is None
        # A WAL-mode SQLite read never waits for a writer and takes ~0.1 ms: cheaper on the event loop
        # than a hop to the thread pool. Network databases are always read in the pool.
        self.inline_reads = self._engine.dialect.name == "sqlite"
        self._secret = server_secret
        self._read = sessionmaker(self._engine, expire_on_commit=False)
        self._write = sessionmaker(self._engine.execution_options(write=True), expire_on_commit=False)
        self.on_change: list[Callable[[], None]] = []
        self._epoch_conn: Any = None
        event.listen(self._write, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop("audited", False):
            for hook in self.on_change:
                hook()

    @property
    def engine(self) -> Engine:
        """The database engine (the registry's price book shares it)."""
        return self._engine

    def migrate(self) -> None:
        migrate_engine(self._engine)

    def close(self) -> None:
        for hook in self.on_change:
            close = getattr(hook, "close", None)
            if close is not None:
                close()
        if self._epoch_conn is not None:
            self._epoch_conn.close()
        if self._owns_engine:
            self._engine.dispose()

    @staticmethod
    def _audit(s: Session, actor: str, action: str, target: str, **detail: Any) -> None:
        s.info["audited"] = True  # bump the auth epoch once this commits
        audit(s, actor, action, target, **detail)

    # ---- tenants --------------------------------------------------------------------------------
    def create_tenant(
        self,
        tenant_id: str,
        *,
        models: Sequence[str] = (),
        limits: dict[str, Any] | None = None,
        budget: dict[str, Any] | None = None,
        actor: str,
    ) -> TenantInfo:
        check_id("tenant", tenant_id)
        with self._write.begin() as s:
            if s.get(Tenant, tenant_id) is not None:
                raise Conflict(f"tenant `{tenant_id}` already exists")
            row = Tenant(
                id=tenant_id, name=tenant_id, models=list(models), limits=limits or {}, budget=budget or {}
            )
            s.add(row)
            self._audit(
                s, actor, "tenant.create", tenant_id, models=list(models), limits=limits, budget=budget
            )
            s.flush()
            return _tenant(row)

    def update_tenant(self, tenant_id: str, *, actor: str, **changes: Any) -> TenantInfo:
        allowed = {"models", "limits", "budget", "disabled"}
        bad = set(changes) - allowed
        if bad:
            raise InvalidRequest(f"cannot change {sorted(bad)}; changeable: {sorted(allowed)}")
        with self._write.begin() as s:
            row = s.get(Tenant, tenant_id)
            if row is None:
                raise NotFound(f"tenant `{tenant_id}` does not exist")
            for k, v in changes.items():
                if v is not None:
                    setattr(row, k, v)
            self._audit(
                s, actor, "tenant.update", tenant_id, **{k: v for k, v in changes.items() if v is not None}
            )
            s.flush()
            return _tenant(row)

    def delete_tenant(self, tenant_id: str, *, actor: str) -> None:
        with self._write.begin() as s:
            row = s.get(Tenant, tenant_id)
            if row is None:
                raise NotFound(f"tenant `{tenant_id}` does not exist")
            for k in s.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id)):
                s.delete(k)
            for a in s.scalars(select(Adapter).where(Adapter.tenant_id == tenant_id)):
                s.delete(a)
            s.delete(row)
            self._audit(s, actor, "tenant.delete", tenant_id)

    def get_tenant(self, tenant_id: str) -> TenantInfo:
        with self._read() as s:
            row = s.get(Tenant, tenant_id)
            if row is None:
                raise NotFound(f"tenant `{tenant_id}` does not exist")
            return _tenant(row)

    def list_tenants(self) -> list[TenantInfo]:
        with self._read() as s:
            return [_tenant(r) for r in s.scalars(select(Tenant).order_by(Tenant.id))]

    # ---- keys -----------------------------------------------------------------------------------
    def create_key(
        self,
        tenant_id: str | None,
        scopes: Iterable[str],
        *,
        name: str = "",
        expires_at: datetime | None = None,
        limits: dict[str, Any] | None = None,
        actor: str,
    ) -> tuple[KeyInfo, str]:
        """A new key and its plaintext (shown once). ``tenant_id=None`` makes a system admin key."""
        scope_list = sorted(set(scopes))
        bad = set(scope_list) - _SCOPES
        if bad or not scope_list:
            raise InvalidRequest(f"scopes must be a non-empty subset of {sorted(_SCOPES)}", param="scopes")
        if tenant_id is None and scope_list != [Scope.ADMIN.value]:
            raise InvalidRequest("a key without a tenant is a system admin key: scopes must be ['admin']")
        if expires_at is not None and _aware(expires_at) <= now():  # type: ignore[operator]
            raise InvalidRequest("expires_at is in the past", param="expires_at")
        new = mint_key(self._secret)
        with self._write.begin() as s:
            if tenant_id is not None and s.get(Tenant, tenant_id) is None:
                raise NotFound(f"tenant `{tenant_id}` does not exist")
            row = ApiKey(
                id=f"key_{uuid.uuid4().hex[:16]}",
                tenant_id=tenant_id,
                name=name,
                prefix=new.prefix,
                key_hash=new.key_hash,
                scopes=scope_list,
                limits=limits or {},
                expires_at=expires_at,
            )
            s.add(row)
            self._audit(
                s, actor, "key.create", row.id, tenant=tenant_id, scopes=scope_list, prefix=new.prefix
            )
            s.flush()
            return _key(row), new.plaintext

    def get_key(self, key_id: str) -> KeyInfo:
        with self._read() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"key `{key_id}` does not exist")
            return _key(row)

    def revoke_key(self, key_id: str, *, actor: str) -> KeyInfo:
        with self._write.begin() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"key `{key_id}` does not exist")
            if row.revoked_at is None:
                row.revoked_at = now()
                self._audit(s, actor, "key.revoke", key_id, tenant=row.tenant_id)
            s.info["audited"] = True  # a repeated revoke bumps the auth epoch again (if a bump failed)
            s.flush()
            return _key(row)

    def list_keys(self, tenant_id: str | None = None, *, system: bool = False) -> list[KeyInfo]:
        q = select(ApiKey).order_by(ApiKey.created_at)
        if tenant_id is not None:
            q = q.where(ApiKey.tenant_id == tenant_id)
        elif system:
            q = q.where(ApiKey.tenant_id.is_(None))
        with self._read() as s:
            return [_key(r) for r in s.scalars(q)]

    def has_admin_key(self) -> bool:
        """True once any unrevoked, unexpired system admin key exists (auth ``auto`` mode)."""
        with self._read() as s:
            rows = s.execute(
                select(ApiKey.expires_at).where(ApiKey.tenant_id.is_(None), ApiKey.revoked_at.is_(None))
            ).all()
        t = now()
        return any(exp is None or _aware(exp) > t for (exp,) in rows)  # type: ignore[operator]

    def digest(self, token: str) -> str:
        return key_digest(self._secret, token)

    def epoch_reader(self) -> Callable[[], int]:
        """A reader of the newest audit-log id (an auth epoch on SQLite, where ids grow in commit order)
        on a connection of its own, without SQLAlchemy (far cheaper than a pooled query). Make it and
        call it on one thread (the event loop's)."""
        if self._epoch_conn is None:
            raw = self._engine.raw_connection()
            self._epoch_conn = raw.driver_connection
            raw.detach()  # kept for the store's life, outside the pool
        cursor = self._epoch_conn.cursor()

        def read() -> int:
            # fetchall runs the statement to its end, so no read snapshot stays open between requests
            return int(cursor.execute(_EPOCH_SQL).fetchall()[0][0])

        return read

    def authenticate(self, token: str) -> Principal:
        """The caller behind ``token``; ``AuthenticationError`` (401) for unknown, revoked or expired keys
        and for keys of a disabled tenant. The message never says which."""
        return self.verify(self.digest(token))[0]

    def verify(self, digest: str) -> tuple[Principal, datetime | None]:
        """:meth:`authenticate` by key digest; also returns the key's expiry (checked again on cache hits)."""
        with self._engine.connect() as conn:
            row = conn.execute(_AUTH_QUERY, {"digest": digest}).first()
        bad = AuthenticationError("Incorrect API key provided.")
        if row is None:
            raise bad
        key_id, tenant_id, scopes, key_limits, expires_at, revoked_at, models, t_limits, budget, disabled = (
            row
        )
        expires_at = _aware(expires_at)
        if revoked_at is not None:
            raise bad
        if expires_at is not None and expires_at <= now():  # type: ignore[operator]
            raise bad
        if tenant_id is not None and (models is None or disabled):
            raise bad
        principal = Principal(
            key_id=key_id,
            tenant_id=tenant_id,
            scopes=frozenset(scopes),
            models=None if tenant_id is None else frozenset(models),
            tenant_limits=dict(t_limits or {}),
            key_limits=dict(key_limits or {}),
            budget=dict(budget or {}),
        )
        return principal, expires_at

    # ---- adapters -------------------------------------------------------------------------------
    def create_adapter(
        self, tenant_id: str, base_model: str, name: str, path: str, *, actor: str
    ) -> AdapterInfo:
        check_id("name", name)
        with self._write.begin() as s:
            if s.get(Tenant, tenant_id) is None:
                raise NotFound(f"tenant `{tenant_id}` does not exist")
            dup = s.scalar(
                select(Adapter).where(
                    Adapter.tenant_id == tenant_id, Adapter.base_model == base_model, Adapter.name == name
                )
            )
            if dup is not None:
                raise Conflict(f"adapter `{base_model}:{name}` already exists")
            row = Adapter(
                id=f"ad_{uuid.uuid4().hex[:16]}",
                tenant_id=tenant_id,
                base_model=base_model,
                name=name,
                path=path,
            )
            s.add(row)
            self._audit(s, actor, "adapter.create", f"{base_model}:{name}", tenant=tenant_id)
            s.flush()
            return _adapter(row)

    def find_adapter(self, tenant_id: str | None, base_model: str, name: str) -> AdapterInfo | None:
        """The tenant's adapter ``base_model:name``; with ``tenant_id=None`` (system admin) any tenant's."""
        q = select(Adapter).where(Adapter.base_model == base_model, Adapter.name == name)
        if tenant_id is not None:
            q = q.where(Adapter.tenant_id == tenant_id)
        with self._read() as s:
            row = s.scalars(q).first()
            return _adapter(row) if row is not None else None

    def list_adapters(self, tenant_id: str | None = None) -> list[AdapterInfo]:
        q = select(Adapter).order_by(Adapter.base_model, Adapter.name)
        if tenant_id is not None:
            q = q.where(Adapter.tenant_id == tenant_id)
        with self._read() as s:
            return [_adapter(r) for r in s.scalars(q)]

    def delete_adapter(self, tenant_id: str, base_model: str, name: str, *, actor: str) -> AdapterInfo:
        with self._write.begin() as s:
            row = s.scalar(
                select(Adapter).where(
                    Adapter.tenant_id == tenant_id, Adapter.base_model == base_model, Adapter.name == name
                )
            )
            if row is None:
                raise NotFound(f"adapter `{base_model}:{name}` does not exist")
            info = _adapter(row)
            s.delete(row)
            self._audit(s, actor, "adapter.delete", info.model_name, tenant=tenant_id)
            return info

    # ---- usage ----------------------------------------------------------------------------------
    def insert_usage(self, records: Sequence[Usage]) -> int:
        """Insert a batch; a record whose ``id`` is already stored is skipped (replays never double-count)."""
        if not records:
            return 0
        rows = []
        for r in records:
            row = {k: getattr(r, k) for k in Usage.__slots__}  # type: ignore[attr-defined]
            row["created_at"] = row["created_at"] or now()
            rows.append(row)
        dialect = self._engine.dialect.name
        ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(UsageRecord)
        stmt = ins.on_conflict_do_nothing(index_elements=["id"])
        with self._write.begin() as s:
            result = s.execute(stmt, rows)
        return int(getattr(result, "rowcount", 0) or 0)

    def usage_rows(
        self, tenant_id: str | None = None, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        q = select(UsageRecord).order_by(UsageRecord.created_at, UsageRecord.id)
        if tenant_id is not None:
            q = q.where(UsageRecord.tenant_id == tenant_id)
        if since is not None:
            q = q.where(UsageRecord.created_at >= since)
        if until is not None:
            q = q.where(UsageRecord.created_at < until)
        with self._read() as s:
            out = []
            for r in s.scalars(q):
                d = {c.name: getattr(r, c.name) for c in UsageRecord.__table__.columns}
                d["created_at"] = _aware(d["created_at"])
                out.append(d)
            return out

    def usage_summary(
        self,
        tenant_id: str | None = None,
        group_by: Sequence[str] = ("tenant", "model"),
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Totals grouped by any of ``tenant``, ``model``, ``day``, ``key``, ``adapter``, ``status``."""
        bad = [g for g in group_by if g not in GROUPS]
        if bad:
            raise InvalidRequest(f"cannot group by {bad}; use any of {list(GROUPS)}", param="group_by")
        totals: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in self.usage_rows(tenant_id, since=since, until=until):
            vals = {
                "tenant": r["tenant_id"],
                "model": r["model"],
                "day": r["created_at"].date().isoformat(),
                "key": r["key_id"],
                "adapter": r["adapter"],
                "status": r["status"],
            }
            k = tuple(vals[g] for g in group_by)
            t = totals.setdefault(
                k,
                {
                    **{g: vals[g] for g in group_by},
                    "requests": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cached_tokens": 0,
                    "cost": 0.0,
                },
            )
            t["requests"] += 1
            for f in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost"):
                t[f] += r[f]
        return [totals[k] for k in sorted(totals, key=lambda k: tuple(str(x) for x in k))]

    def spent(self, tenant_id: str, since: datetime) -> tuple[int, float]:
        """(tokens, cost) the ledger holds for ``tenant_id`` since ``since`` (seeds budget counters)."""
        with self._read() as s:
            tokens, cost = s.execute(
                select(
                    func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0),
                    func.coalesce(func.sum(UsageRecord.cost), 0.0),
                ).where(UsageRecord.tenant_id == tenant_id, UsageRecord.created_at >= since)
            ).one()
        return int(tokens), float(cost)

    # ---- audit ----------------------------------------------------------------------------------
    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._read() as s:
            rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
            return [
                {
                    "id": r.id,
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "detail": r.detail,
                    "created_at": r.created_at.replace(tzinfo=r.created_at.tzinfo or UTC).isoformat(),
                }
                for r in rows
            ]
