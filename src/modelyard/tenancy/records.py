"""Plain records that cross the tenancy store boundary (no ORM rows leave ``store.py``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Scope(enum.StrEnum):
    """What a key may do. ``admin`` on a system key (no tenant) manages everything; on a tenant key it
    manages that tenant's keys, adapters and usage. ``inference`` calls ``/v1``; ``read`` lists models and
    reads its tenant's usage."""

    ADMIN = "admin"
    INFERENCE = "inference"
    READ = "read"


@dataclass(frozen=True, slots=True)
class TenantInfo:
    id: str
    models: list[str]
    limits: dict[str, Any]
    budget: dict[str, Any]
    disabled: bool
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "models": list(self.models),
            "limits": dict(self.limits),
            "budget": dict(self.budget),
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant_id: str | None
    name: str
    prefix: str
    scopes: list[str]
    limits: dict[str, Any]
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "limits": dict(self.limits),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    id: str
    tenant_id: str
    base_model: str
    name: str
    path: str
    created_at: datetime

    @property
    def model_name(self) -> str:
        """The name clients send in ``model``: ``<base_model>:<name>``."""
        return f"{self.base_model}:{self.name}"

    @property
    def engine_name(self) -> str:
        """The engine's adapter id: unique across tenants and registrations, so two tenants' same-named
        adapters never mix and a re-registered name never serves the old weights."""
        return f"{self.tenant_id}/{self.name}/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.model_name,
            "tenant": self.tenant_id,
            "base_model": self.base_model,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved once per request by the auth middleware.

    ``tenant_id`` is ``None`` for system keys and for anonymous use; ``models`` is ``None`` when
    every model is allowed.
    """

    key_id: str | None
    tenant_id: str | None
    scopes: frozenset[str]
    models: frozenset[str] | None = None
    tenant_limits: dict[str, Any] = field(default_factory=dict)
    key_limits: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    anonymous: bool = False

    @property
    def is_system_admin(self) -> bool:
        return self.tenant_id is None and Scope.ADMIN in self.scopes

    @property
    def actor(self) -> str:
        return "anonymous" if self.anonymous else f"key:{self.key_id}"

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models or "*" in self.models

    def may_manage(self, tenant_id: str) -> bool:
        """System admins manage every tenant; a tenant ``admin`` key manages only its own."""
        return self.is_system_admin or (self.tenant_id == tenant_id and Scope.ADMIN in self.scopes)

    def may_read(self, tenant_id: str) -> bool:
        return self.is_system_admin or (
            self.tenant_id == tenant_id and bool(self.scopes & {Scope.ADMIN, Scope.READ})
        )


ANONYMOUS = Principal(
    key_id=None, tenant_id=None, scopes=frozenset({"admin", "inference", "read"}), anonymous=True
)


@dataclass(slots=True)
class Usage:
    """One usage record as buffered by the meter (see ``models.UsageRecord``)."""

    id: str
    request_id: str
    tenant_id: str | None
    key_id: str | None
    model: str
    endpoint: str
    status: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    queue_ms: float = 0.0
    engine_ms: float = 0.0
    cost: float = 0.0
    version: str | None = None
    adapter: str | None = None
    created_at: datetime | None = None
