"""ORM tables of the model registry: models, their immutable versions, movable aliases, and a
revision counter that every registry write bumps (so a server can poll one integer for changes).

Rows never leave :mod:`modelyard.registry.service`; callers get the plain records of
:mod:`modelyard.registry.records`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from modelyard.errors import Conflict
from modelyard.store.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class RegistryState(Base):
    """A single row (``id = 1``, inserted by the migration) holding the registry's revision."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class ModelRow(Base):
    __tablename__ = "registry_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    is_base_model: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    # Prices per 1000 tokens (both set or both NULL: then ``tenancy.prices`` applies).
    prompt_per_1k: Mapped[float | None] = mapped_column(Float, nullable=True)
    completion_per_1k: Mapped[float | None] = mapped_column(Float, nullable=True)

    versions: Mapped[list[VersionRow]] = relationship(
        back_populates="model", order_by="VersionRow.version", cascade="all, delete-orphan"
    )
    aliases: Mapped[list[AliasRow]] = relationship(
        back_populates="model", order_by="AliasRow.alias", cascade="all, delete-orphan"
    )


class VersionRow(Base):
    """One immutable version: rows are inserted, never updated (enforced by ``before_update``)."""

    __tablename__ = "registry_model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registry_models.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    artifact_uri: Mapped[str] = mapped_column(Text, nullable=False)
    digest: Mapped[str | None] = mapped_column(String(71), nullable=True)
    architecture: Mapped[str] = mapped_column(String(64), nullable=False)
    tokenizer: Mapped[str | None] = mapped_column(Text, nullable=True)
    context_length: Mapped[int] = mapped_column(Integer, nullable=False)
    quantization: Mapped[str | None] = mapped_column(String(32), nullable=True)
    serving_params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    # Sampling defaults the artifact carries, read at registration (NULL on rows older than 0005).
    artifact_defaults: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    model: Mapped[ModelRow] = relationship(back_populates="versions")
    defaults: Mapped[VersionDefaultsRow | None] = relationship(
        back_populates="version", cascade="all, delete-orphan", uselist=False
    )


class VersionDefaultsRow(Base):
    """An operator's sampling defaults for one version: mutable, unlike the version itself."""

    __tablename__ = "registry_version_defaults"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("registry_model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, onupdate=_now
    )

    version: Mapped[VersionRow] = relationship(back_populates="defaults")


class AliasRow(Base):
    __tablename__ = "registry_model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registry_models.id", ondelete="CASCADE"), nullable=False
    )
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("registry_model_versions.id", ondelete="CASCADE"), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, onupdate=_now
    )

    model: Mapped[ModelRow] = relationship(back_populates="aliases")
    target: Mapped[VersionRow] = relationship()


@event.listens_for(VersionRow, "before_update")
def _versions_are_immutable(mapper: Any, _connection: Any, target: VersionRow) -> None:
    # Fires for any dirty version, also one whose operator defaults (another table) changed.
    state = inspect(target)
    if not any(state.attrs[attr.key].history.has_changes() for attr in mapper.column_attrs):
        return
    raise Conflict(f"model versions are immutable (tried to change version {target.version})")
