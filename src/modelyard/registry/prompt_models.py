"""ORM tables of the prompt registry: prompts, their immutable numbered versions and movable labels.

A prompt is global (``tenant_id`` NULL) or owned by one tenant; ``(tenant_id, name)`` is unique (the
store checks it under the registry's write lock, since NULLs never collide in a unique index).
``latest`` is not stored: it is the highest version number. Rows never leave
:mod:`modelyard.registry.prompts`; callers get its plain records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from modelyard.errors import Conflict
from modelyard.store.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class PromptRow(Base):
    __tablename__ = "registry_prompts"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)

    versions: Mapped[list[PromptVersionRow]] = relationship(
        back_populates="prompt", order_by="PromptVersionRow.version", cascade="all, delete-orphan"
    )
    labels: Mapped[list[PromptLabelRow]] = relationship(
        back_populates="prompt", order_by="PromptLabelRow.label", cascade="all, delete-orphan"
    )


class PromptVersionRow(Base):
    """One immutable version: inserted, never updated (enforced by ``before_update``)."""

    __tablename__ = "registry_prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("registry_prompts.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # PromptSpec.content()
    digest: Mapped[str] = mapped_column(String(71), nullable=False)
    commit_message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    author: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)

    prompt: Mapped[PromptRow] = relationship(back_populates="versions")


class PromptLabelRow(Base):
    __tablename__ = "registry_prompt_labels"
    __table_args__ = (UniqueConstraint("prompt_id", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("registry_prompts.id", ondelete="CASCADE"), nullable=False
    )
    label: Mapped[str] = mapped_column(String(64), nullable=False)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("registry_prompt_versions.id", ondelete="CASCADE"), nullable=False
    )
    protected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_now, onupdate=_now
    )

    prompt: Mapped[PromptRow] = relationship(back_populates="labels")
    target: Mapped[PromptVersionRow] = relationship()


@event.listens_for(PromptVersionRow, "before_update")
def _versions_are_immutable(_mapper: Any, _connection: Any, target: PromptVersionRow) -> None:
    raise Conflict(f"prompt versions are immutable (tried to change version {target.version})")
