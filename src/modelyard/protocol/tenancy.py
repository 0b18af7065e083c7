"""Wire models of the tenancy admin API (``/admin/tenants``, ``/admin/keys``, ``/admin/adapters``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Body):
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (prompt + completion) per minute.")
    concurrency: int | None = Field(default=None, ge=1, description="Requests in flight at once.")
    models: dict[str, Limits] = Field(default_factory=dict, description="Per-model limits (same fields).")


class Budget(_Body):
    tokens: int | None = Field(default=None, ge=0, description="Tokens per budget period.")
    cost: float | None = Field(default=None, ge=0, description="Spend per budget period (price units).")


class CreateTenantRequest(_Body):
    id: str = Field(description="Tenant id: lowercase letters, digits, '-' and '_'.")
    models: list[str] = Field(default_factory=list, description="Model names it may use (`*`: all).")
    limits: Limits = Field(default_factory=Limits)
    budget: Budget = Field(default_factory=Budget)


class UpdateTenantRequest(_Body):
    models: list[str] | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    disabled: bool | None = None


class CreateKeyRequest(_Body):
    tenant: str | None = Field(default=None, description="Owning tenant; omit for a system admin key.")
    scopes: list[str] = Field(default_factory=lambda: ["inference"])
    name: str = ""
    expires_at: datetime | None = None
    expires_in_s: float | None = Field(default=None, gt=0, description="Alternative to expires_at.")
    limits: Limits = Field(default_factory=Limits)


class CreateAdapterRequest(_Body):
    tenant: str | None = Field(default=None, description="Owner (default: the caller's tenant).")
    base_model: str
    name: str
    path: str = Field(description="A PEFT adapter folder on the server (adapter_config.json + weights).")


def dump_limits(limits: Limits | None) -> dict[str, Any]:
    return {} if limits is None else limits.model_dump(exclude_none=True, exclude_defaults=True)
