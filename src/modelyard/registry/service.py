"""The model registry service: registered models, immutable numbered versions, movable aliases.

Every write runs in one transaction that first takes the registry's write lock (the
``registry_state`` row on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent writers from
any number of processes serialise, version numbers never collide and a failed write leaves the
stored rows as they were. Each write that changes something bumps :meth:`Registry.revision`.

The methods are synchronous (a few milliseconds each); call them from async code through
``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from modelyard.errors import Conflict, ModelNotFound
from modelyard.registry.artifacts import normalize_artifact
from modelyard.registry.models import AliasRow, ModelRow, RegistryState, VersionDefaultsRow, VersionRow
from modelyard.registry.records import (
    ARCHITECTURE_RE,
    MAX_DESCRIPTION_CHARS,
    MAX_OWNER_CHARS,
    MAX_TOKENIZER_CHARS,
    PRODUCTION_ALIAS,
    QUANTIZATION_RE,
    ModelInfo,
    Prices,
    ResolvedModel,
    VersionInfo,
    check_alias,
    check_context_length,
    check_name,
    check_pattern,
    check_price,
    check_serving_params,
    check_text,
    check_version_number,
    resolve_in,
)
from modelyard.registry.sampling import SamplingDefaults, artifact_defaults
from modelyard.store.audit import SYSTEM_ACTOR, audit
from modelyard.store.db import create_db_engine
from modelyard.store.db import migrate as migrate_engine


class Registry:
    """The model registry stored in the database at ``database_url``.

    Call :meth:`migrate` once before use (idempotent). Errors are raised as
    :mod:`modelyard.errors` types: :class:`InvalidRequest` (with ``param``) for bad input,
    :class:`ModelNotFound` for unknown models, versions and aliases, :class:`Conflict` for
    duplicates.
    """

    def __init__(self, database_url: str, *, engine: Engine | None = None) -> None:
        self._engine = engine or create_db_engine(database_url)
        self._owns_engine = engine is None
        self._read = sessionmaker(self._engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self._engine.execution_options(write=True), expire_on_commit=False
        )

    @property
    def engine(self) -> Engine:
        """The database engine; stores whose tables live beside the registry's share it."""
        return self._engine

    def migrate(self) -> None:
        """Upgrade the schema to the latest migration; safe on every start and from several processes."""
        migrate_engine(self._engine)

    def close(self) -> None:
        """Release the database connections (unless the engine was handed in)."""
        if self._owns_engine:
            self._engine.dispose()

    # -- writes -----------------------------------------------------------------------------------

    def register_model(
        self,
        name: str,
        *,
        description: str = "",
        is_base_model: bool = False,
        owner: str | None = None,
        actor: str = SYSTEM_ACTOR,
    ) -> ModelInfo:
        """Register a model with no versions yet. Raises :class:`Conflict` if the name is taken."""
        check_name(name)
        check_text(description, "description", MAX_DESCRIPTION_CHARS)
        check_text(owner, "owner", MAX_OWNER_CHARS, optional=True)
        with self._write() as session:
            if self._find(session, name) is not None:
                raise Conflict(f"the model '{name}' is already registered", param="name")
            row = ModelRow(name=name, description=description, is_base_model=bool(is_base_model), owner=owner)
            session.add(row)
            session.flush()
            self._bump(session)
            audit(session, actor, "model.register", name, is_base_model=bool(is_base_model))
            return _model_info(row)

    def create_version(
        self,
        name: str,
        *,
        artifact_uri: str,
        digest: str | None = None,
        architecture: str,
        tokenizer: str | None = None,
        context_length: int,
        quantization: str | None = None,
        serving_params: dict[str, Any] | None = None,
        actor: str = SYSTEM_ACTOR,
    ) -> VersionInfo:
        """Add the next version (1, 2, ...) of a registered model.

        A local artifact must exist and gets its SHA-256 digest computed unless ``digest`` is given; a
        remote reference (``openai_compat://<deployment>``) may have no digest.
        """
        fields = version_fields(
            artifact_uri=artifact_uri,
            digest=digest,
            architecture=architecture,
            tokenizer=tokenizer,
            context_length=context_length,
            quantization=quantization,
            serving_params=serving_params,
        )
        with self._write() as session:
            model = self._get(session, name)
            row = self._add_version(session, model, fields)
            audit(session, actor, "model.version.create", f"{name}:{row.version}", digest=row.digest)
            return _version_info(model.name, row, ())

    def ensure_model(
        self,
        name: str,
        *,
        artifact_uri: str,
        architecture: str,
        context_length: int,
        quantization: str | None = None,
        is_base_model: bool = False,
        serving_params: dict[str, Any] | None = None,
        description: str = "",
        tokenizer: str | None = None,
        digest: str | None = None,
    ) -> ResolvedModel:
        """Make sure ``name`` serves this artifact; idempotent, for bootstrapping packaged models.

        ``digest``: the artifact's ``sha256:`` digest when the caller already knows it (the engine
        remembers its GGUF files' digests), so a start does not hash the file again.

        Registers the model, version 1 and alias ``production`` if the model is absent. If a version
        with the same digest, location and serving fields exists, nothing changes (an operator's alias
        choices are kept). Otherwise a new version is created and ``production`` moves to it.
        Returns what ``name`` resolves to afterwards.
        """
        check_name(name)
        check_text(description, "description", MAX_DESCRIPTION_CHARS)
        fields = version_fields(
            artifact_uri=artifact_uri,
            digest=digest,
            architecture=architecture,
            tokenizer=tokenizer,
            context_length=context_length,
            quantization=quantization,
            serving_params=serving_params,
        )
        with self._write() as session:
            model = self._find(session, name)
            if model is None:
                model = ModelRow(name=name, description=description, is_base_model=bool(is_base_model))
                session.add(model)
                session.flush()
                audit(session, SYSTEM_ACTOR, "model.register", name, is_base_model=bool(is_base_model))
            if not any(_same_version(v, fields) for v in model.versions):
                row = self._add_version(session, model, fields)
                self._point_alias(session, model, PRODUCTION_ALIAS, row)
                audit(
                    session, SYSTEM_ACTOR, "model.version.create", f"{name}:{row.version}", digest=row.digest
                )
                audit(
                    session,
                    SYSTEM_ACTOR,
                    "model.alias.set",
                    f"{name}@{PRODUCTION_ALIAS}",
                    version=row.version,
                )
            return resolve_in({name: _model_info(model)}, name)

    def set_alias(self, name: str, alias: str, version: int, *, actor: str = SYSTEM_ACTOR) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (creating or moving it)."""
        check_alias(alias)
        check_version_number(version)
        with self._write() as session:
            model = self._get(session, name)
            target = next((v for v in model.versions if v.version == version), None)
            if target is None:
                raise ModelNotFound(f"the model '{name}' has no version {version}", param="version")
            self._point_alias(session, model, alias, target)
            audit(session, actor, "model.alias.set", f"{name}@{alias}", version=version)

    def delete_alias(self, name: str, alias: str, *, actor: str = SYSTEM_ACTOR) -> None:
        """Remove ``alias`` from model ``name``; :class:`ModelNotFound` if it is not set."""
        check_alias(alias)
        with self._write() as session:
            model = self._get(session, name)
            row = next((a for a in model.aliases if a.alias == alias), None)
            if row is None:
                raise ModelNotFound(f"the model '{name}' has no alias '{alias}'", param="alias")
            session.delete(row)
            self._bump(session)
            audit(session, actor, "model.alias.delete", f"{name}@{alias}")

    def set_prices(
        self, name: str, *, prompt_per_1k: float, completion_per_1k: float, actor: str = SYSTEM_ACTOR
    ) -> ModelInfo:
        """Set the prices of model ``name`` per 1000 prompt and completion tokens (finite, >= 0)."""
        prompt = check_price(prompt_per_1k, "prompt_per_1k")
        completion = check_price(completion_per_1k, "completion_per_1k")
        with self._write() as session:
            model = self._get(session, name)
            if (model.prompt_per_1k, model.completion_per_1k) != (prompt, completion):
                model.prompt_per_1k, model.completion_per_1k = prompt, completion
                session.flush()
                self._bump(session)
                audit(
                    session,
                    actor,
                    "model.prices.set",
                    name,
                    prompt_per_1k=prompt,
                    completion_per_1k=completion,
                )
            return _model_info(model)

    def clear_prices(self, name: str, *, actor: str = SYSTEM_ACTOR) -> ModelInfo:
        """Remove the prices of ``name`` (the ``tenancy.prices`` setting applies again)."""
        with self._write() as session:
            model = self._get(session, name)
            if model.prompt_per_1k is not None or model.completion_per_1k is not None:
                model.prompt_per_1k = model.completion_per_1k = None
                session.flush()
                self._bump(session)
                audit(session, actor, "model.prices.clear", name)
            return _model_info(model)

    def set_defaults(
        self, name: str, version: int, defaults: Mapping[str, Any], *, actor: str = SYSTEM_ACTOR
    ) -> VersionInfo:
        """Set the operator's sampling defaults of ``name:version`` (replacing earlier ones).

        ``defaults`` is validated by :meth:`SamplingDefaults.from_mapping`; an empty mapping is the same
        as :meth:`clear_defaults`. They win over the artifact's defaults, field by field.
        """
        check_version_number(version)
        params = SamplingDefaults.from_mapping(defaults).to_dict()
        if not params:
            return self.clear_defaults(name, version, actor=actor)
        with self._write() as session:
            model = self._get(session, name)
            row = self._version_row(model, version)
            if row.defaults is None:
                row.defaults = VersionDefaultsRow(params=params)
            elif row.defaults.params != params:
                row.defaults.params = params
            else:
                return self._version_of(model, row)
            session.flush()
            self._bump(session)
            audit(session, actor, "model.defaults.set", f"{name}:{version}", **params)
            return self._version_of(model, row)

    def clear_defaults(self, name: str, version: int, *, actor: str = SYSTEM_ACTOR) -> VersionInfo:
        """Remove the operator's defaults of ``name:version`` (the artifact's and the settings' apply)."""
        check_version_number(version)
        with self._write() as session:
            model = self._get(session, name)
            row = self._version_row(model, version)
            if row.defaults is not None:
                row.defaults = None  # delete-orphan: the row goes
                session.flush()
                self._bump(session)
                audit(session, actor, "model.defaults.clear", f"{name}:{version}")
            return self._version_of(model, row)

    # -- reads ------------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ResolvedModel:
        """Resolve ``name`` (alias ``production`` if set, else the latest version), ``name@alias`` or
        ``name:version``. Raises :class:`ModelNotFound` (``param="model"``) with a message saying what
        is missing."""
        name = ref.split("@", 1)[0].split(":", 1)[0] if isinstance(ref, str) else ""
        with self._read() as session:
            model = self._find(session, name) if name else None
            models = {model.name: _model_info(model)} if model is not None else {}
        return resolve_in(models, ref)

    def get_model(self, name: str) -> ModelInfo:
        """The model with its versions and aliases; :class:`ModelNotFound` if not registered."""
        with self._read() as session:
            return _model_info(self._get(session, name))

    def list_models(self) -> list[ModelInfo]:
        """Every registered model, sorted by name, with versions and aliases (one consistent read)."""
        with self._read() as session, session.begin():
            rows = session.scalars(_model_query().order_by(ModelRow.name)).all()
            return [_model_info(row) for row in rows]

    def prices(self) -> dict[str, Prices]:
        """Model name -> prices, for every model that has them (one query)."""
        with self._read() as session:
            rows = session.execute(
                select(ModelRow.name, ModelRow.prompt_per_1k, ModelRow.completion_per_1k).where(
                    ModelRow.prompt_per_1k.is_not(None), ModelRow.completion_per_1k.is_not(None)
                )
            ).all()
        return {name: Prices(float(p or 0.0), float(c or 0.0)) for name, p, c in rows}

    def revision(self) -> int:
        """A counter bumped by every write that changes the registry; cheap to poll."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(RegistryState.revision).where(RegistryState.id == 1)).scalar_one())

    # -- internals --------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        try:
            with self._write_sessions.begin() as session:
                # Row lock on PostgreSQL; SQLite already holds the write lock from BEGIN IMMEDIATE.
                session.execute(select(RegistryState.id).where(RegistryState.id == 1).with_for_update())
                yield session
        except IntegrityError as exc:  # only reachable if the schema's constraints catch a bug here
            raise Conflict(f"the registry rejected a conflicting write: {exc.orig}") from exc

    @staticmethod
    def _bump(session: Session) -> None:
        session.execute(
            update(RegistryState).where(RegistryState.id == 1).values(revision=RegistryState.revision + 1)
        )

    @staticmethod
    def _find(session: Session, name: str) -> ModelRow | None:
        return session.scalars(_model_query().where(ModelRow.name == name)).one_or_none()

    def _get(self, session: Session, name: str) -> ModelRow:
        if not isinstance(name, str) or not name:
            raise ModelNotFound("a model name is required", param="name")
        model = self._find(session, name)
        if model is None:
            raise ModelNotFound(f"the model '{name}' does not exist", param="name")
        return model

    @staticmethod
    def _version_row(model: ModelRow, version: int) -> VersionRow:
        row = next((v for v in model.versions if v.version == version), None)
        if row is None:
            raise ModelNotFound(f"the model '{model.name}' has no version {version}", param="version")
        return row

    @staticmethod
    def _version_of(model: ModelRow, row: VersionRow) -> VersionInfo:
        aliases = tuple(sorted(a.alias for a in model.aliases if a.version_id == row.id))
        return _version_info(model.name, row, aliases)

    def _add_version(self, session: Session, model: ModelRow, fields: dict[str, Any]) -> VersionRow:
        last = session.scalar(select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id))
        carried = artifact_defaults(fields["artifact_uri"]).to_dict() or None
        row = VersionRow(model=model, version=(last or 0) + 1, artifact_defaults=carried, **fields)
        session.add(row)
        session.flush()
        self._bump(session)
        return row

    def _point_alias(self, session: Session, model: ModelRow, alias: str, target: VersionRow) -> None:
        row = next((a for a in model.aliases if a.alias == alias), None)
        if row is None:
            session.add(AliasRow(model=model, alias=alias, target=target))
        elif row.version_id != target.id:
            row.target = target
            row.updated_at = datetime.now(UTC)
        else:
            return
        session.flush()
        self._bump(session)


def _model_query():  # type: ignore[no-untyped-def]
    return select(ModelRow).options(
        selectinload(ModelRow.versions).selectinload(VersionRow.defaults),
        selectinload(ModelRow.aliases).selectinload(AliasRow.target),
    )


def version_fields(
    *,
    artifact_uri: str,
    digest: str | None,
    architecture: str,
    tokenizer: str | None,
    context_length: int,
    quantization: str | None,
    serving_params: dict[str, Any] | None,
) -> dict[str, Any]:
    """Validated, normalised fields of a new version (the artifact is hashed last, after cheap checks).

    Raises :class:`InvalidRequest` naming the bad field. The result can be passed straight to
    :meth:`Registry.create_version` (its digest is then not computed again).
    """
    check_pattern(architecture, "architecture", ARCHITECTURE_RE, "1-64 letters, digits, '_', '.', '-'")
    check_text(tokenizer, "tokenizer", MAX_TOKENIZER_CHARS, optional=True)
    check_context_length(context_length)
    check_pattern(
        quantization,
        "quantization",
        QUANTIZATION_RE,
        "1-32 letters, digits, '_', '.', '+', '-'",
        optional=True,
    )
    params = check_serving_params(serving_params)
    uri, checked_digest = normalize_artifact(artifact_uri, digest)
    return {
        "artifact_uri": uri,
        "digest": checked_digest,
        "architecture": architecture,
        "tokenizer": tokenizer,
        "context_length": context_length,
        "quantization": quantization,
        "serving_params": params,
    }


def _same_version(row: VersionRow, fields: dict[str, Any]) -> bool:
    return all(getattr(row, key) == value for key, value in fields.items())


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _version_info(model: str, row: VersionRow, aliases: tuple[str, ...]) -> VersionInfo:
    return VersionInfo(
        model=model,
        version=row.version,
        artifact_uri=row.artifact_uri,
        digest=row.digest,
        architecture=row.architecture,
        tokenizer=row.tokenizer,
        context_length=row.context_length,
        quantization=row.quantization,
        serving_params=dict(row.serving_params or {}),
        created_at=_utc(row.created_at),
        aliases=aliases,
        artifact_defaults=SamplingDefaults.from_mapping(row.artifact_defaults),
        default_overrides=SamplingDefaults.from_mapping(row.defaults.params if row.defaults else None),
    )


def _prices(row: ModelRow) -> Prices | None:
    if row.prompt_per_1k is None or row.completion_per_1k is None:
        return None
    return Prices(float(row.prompt_per_1k), float(row.completion_per_1k))


def _model_info(row: ModelRow) -> ModelInfo:
    aliases = {a.alias: a.target.version for a in row.aliases}
    by_version: dict[int, list[str]] = {}
    for alias, number in sorted(aliases.items()):
        by_version.setdefault(number, []).append(alias)
    return ModelInfo(
        name=row.name,
        description=row.description,
        is_base_model=row.is_base_model,
        owner=row.owner,
        created_at=_utc(row.created_at),
        versions=tuple(
            _version_info(row.name, v, tuple(by_version.get(v.version, ()))) for v in row.versions
        ),
        aliases=aliases,
        prices=_prices(row),
    )
