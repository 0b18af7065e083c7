"""The prompt registry: named prompts with immutable numbered versions and movable labels.

Writes share the model registry's database, write lock and revision counter (every change bumps
:meth:`Registry.revision`, so caches such as :class:`~modelyard.registry.prompt_book.PromptBook`
notice within ``registry_poll_s``) and write their audit row in the same transaction.

Ownership and visibility follow tenant adapters: a prompt is global (``tenant`` None, written by
system admins) or owned by one tenant; a tenant sees the global prompts and its own (its own
shadows a global one of the same name), and another tenant's prompt is a 404 in the same words as
a prompt that does not exist. A *protected* label is moved or removed by system admins only. Pushing
content whose digest equals the latest version's returns that version instead of adding one.

Methods are synchronous (a few milliseconds each); call them from async code through a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from modelyard.errors import InvalidRequest, PermissionDenied
from modelyard.registry.models import RegistryState
from modelyard.registry.prompt_models import PromptLabelRow, PromptRow, PromptVersionRow
from modelyard.registry.prompt_records import (
    LATEST,
    MAX_COMMIT_CHARS,
    PromptInfo,
    PromptNotFound,
    PromptVersionInfo,
    check_label,
    check_prompt_name,
)
from modelyard.registry.prompt_spec import PromptSpec, compile_spec
from modelyard.store.audit import SYSTEM_ACTOR, audit

ANY_TENANT = "*"  # list_prompts: every tenant's prompts and the global ones (system admins)


class PromptRegistry:
    """Prompts stored beside the model registry on ``engine`` (already migrated)."""

    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)

    # -- writes -----------------------------------------------------------------------------------

    def push(
        self,
        spec: PromptSpec,
        *,
        commit_message: str = "",
        labels: Iterable[str] = (),
        tenant: str | None = None,
        system: bool = True,
        actor: str = SYSTEM_ACTOR,
    ) -> tuple[PromptVersionInfo, bool]:
        """Store ``spec`` as the next version of prompt ``spec.name`` owned by ``tenant`` (creating the
        prompt) and point ``labels`` at it. Returns (version, created): an unchanged push (same digest
        as the latest version) returns the latest with ``created`` False. ``system``: the caller is a
        system admin (needed to move a protected label)."""
        check_prompt_name(spec.name)
        compile_spec(spec)
        if not isinstance(commit_message, str) or len(commit_message) > MAX_COMMIT_CHARS:
            raise InvalidRequest(
                f"a commit message is at most {MAX_COMMIT_CHARS} characters", param="commit_message"
            )
        labels = [check_label(label, "labels") for label in labels]
        digest = spec.digest()
        with self._write() as session:
            row = self._find(session, spec.name, tenant)
            if row is None:
                row = PromptRow(name=spec.name, tenant_id=tenant)
                session.add(row)
                session.flush()
                audit(session, actor, "prompt.create", _target(spec.name, tenant))
            for label in labels:
                self._may_move(row, label, system)
            latest = row.versions[-1] if row.versions else None
            created = latest is None or latest.digest != digest
            if created:
                latest = PromptVersionRow(
                    prompt=row,
                    version=(latest.version if latest else 0) + 1,
                    content=spec.content(),
                    digest=digest,
                    commit_message=commit_message,
                    author=actor,
                )
                session.add(latest)
                session.flush()
                self._bump(session)
                audit(session, actor, "prompt.version.create", _ref(row, latest.version), digest=digest)
            assert latest is not None
            for label in labels:
                self._point(session, row, label, latest, None, actor)
            session.refresh(row)
            return _info(row).version(latest.version), created  # type: ignore[return-value]

    def set_label(
        self,
        name: str,
        label: str,
        version: int,
        *,
        tenant: str | None = None,
        protected: bool | None = None,
        system: bool = True,
        actor: str = SYSTEM_ACTOR,
    ) -> PromptInfo:
        """Point ``label`` of the prompt ``name`` owned by ``tenant`` at ``version``; ``protected``
        (system admins only) sets or clears the label's protection, None keeps it."""
        check_label(label)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidRequest(f"invalid version {version!r}: a positive integer", param="version")
        if protected is not None and not system:
            raise PermissionDenied("only a system admin protects or unprotects a label")
        with self._write() as session:
            row = self._get(session, name, tenant)
            self._may_move(row, label, system)
            target = next((v for v in row.versions if v.version == version), None)
            if target is None:
                raise PromptNotFound(f"the prompt `{name}` has no version {version}", param="version")
            self._point(session, row, label, target, protected, actor)
            session.refresh(row)
            return _info(row)

    def delete_label(
        self,
        name: str,
        label: str,
        *,
        tenant: str | None = None,
        system: bool = True,
        actor: str = SYSTEM_ACTOR,
    ) -> PromptInfo:
        """Remove ``label``; :class:`PromptNotFound` if it is not set."""
        check_label(label)
        with self._write() as session:
            row = self._get(session, name, tenant)
            found = next((lab for lab in row.labels if lab.label == label), None)
            if found is None:
                raise PromptNotFound(f"the prompt `{name}` has no label `{label}`", param="label")
            self._may_move(row, label, system)
            row.labels.remove(found)
            session.flush()
            self._bump(session)
            audit(session, actor, "prompt.label.delete", f"{_target(name, tenant)}@{label}")
            session.refresh(row)
            return _info(row)

    # -- reads ------------------------------------------------------------------------------------

    def get(self, name: str, tenant: str | None = None) -> PromptInfo:
        """The prompt ``name`` owned by exactly ``tenant`` (None: the global one)."""
        with self._read() as session:
            return _info(self._get(session, name, tenant))

    def find(self, name: str, viewer: str | None) -> PromptInfo:
        """The prompt ``name`` as the tenant ``viewer`` sees it: its own, else the global one."""
        with self._read() as session:
            row = (self._find(session, name, viewer) if viewer is not None else None) or self._find(
                session, name, None
            )
            if row is None:
                raise PromptNotFound(f"the prompt `{name}` does not exist", param="name")
            return _info(row)

    def list_prompts(
        self, tenant: str | None = ANY_TENANT, *, include_global: bool = True
    ) -> list[PromptInfo]:
        """Prompts owned by ``tenant`` (``ANY_TENANT``: all), plus the global ones, sorted by name."""
        with self._read() as session, session.begin():
            query = _query()
            if tenant != ANY_TENANT:
                owned = PromptRow.tenant_id == tenant if tenant is not None else PromptRow.tenant_id.is_(None)
                query = query.where(owned | PromptRow.tenant_id.is_(None) if include_global else owned)
            rows = session.scalars(query.order_by(PromptRow.name, PromptRow.tenant_id)).all()
            return [_info(r) for r in rows]

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
    def _find(session: Session, name: str, tenant: str | None) -> PromptRow | None:
        owned = PromptRow.tenant_id == tenant if tenant is not None else PromptRow.tenant_id.is_(None)
        return session.scalars(_query().where(PromptRow.name == name, owned)).one_or_none()

    def _get(self, session: Session, name: str, tenant: str | None) -> PromptRow:
        row = self._find(session, name, tenant) if isinstance(name, str) and name else None
        if row is None:
            raise PromptNotFound(f"the prompt `{name}` does not exist", param="name")
        return row

    @staticmethod
    def _may_move(row: PromptRow, label: str, system: bool) -> None:
        found = next((lab for lab in row.labels if lab.label == label), None)
        if found is not None and found.protected and not system:
            raise PermissionDenied(
                f"the label `{label}` of `{row.name}` is protected: only a system admin moves it"
            )

    def _point(
        self,
        session: Session,
        row: PromptRow,
        label: str,
        target: PromptVersionRow,
        protected: bool | None,
        actor: str,
    ) -> None:
        found = next((lab for lab in row.labels if lab.label == label), None)
        if found is None:
            found = PromptLabelRow(prompt=row, label=label, target=target, protected=bool(protected))
            session.add(found)
        elif found.version_id != target.id or (protected is not None and found.protected != protected):
            found.target = target
            found.protected = found.protected if protected is None else protected
            found.updated_at = datetime.now(UTC)
        else:
            return
        session.flush()
        self._bump(session)
        audit(
            session,
            actor,
            "prompt.label.set",
            f"{_target(row.name, row.tenant_id)}@{label}",
            version=target.version,
            protected=found.protected,
        )


def _query():  # type: ignore[no-untyped-def]
    return select(PromptRow).options(
        selectinload(PromptRow.versions), selectinload(PromptRow.labels).selectinload(PromptLabelRow.target)
    )


def _target(name: str, tenant: str | None) -> str:
    return name if tenant is None else f"{tenant}/{name}"


def _ref(row: PromptRow, version: int) -> str:
    return f"{_target(row.name, row.tenant_id)}:{version}"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _info(row: PromptRow) -> PromptInfo:
    labels = {lab.label: lab.target.version for lab in row.labels}
    if row.versions:
        labels[LATEST] = row.versions[-1].version
    by_version: dict[int, list[str]] = {}
    for label, number in sorted(labels.items()):
        by_version.setdefault(number, []).append(label)
    versions = tuple(
        PromptVersionInfo(
            name=row.name,
            tenant=row.tenant_id,
            version=v.version,
            content=dict(v.content),
            digest=v.digest,
            commit_message=v.commit_message,
            author=v.author,
            created_at=_utc(v.created_at),
            labels=tuple(by_version.get(v.version, ())),
        )
        for v in row.versions
    )
    return PromptInfo(
        name=row.name,
        tenant=row.tenant_id,
        created_at=_utc(row.created_at),
        versions=versions,
        labels=labels,
        protected=frozenset(lab.label for lab in row.labels if lab.protected),
    )
