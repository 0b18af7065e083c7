"""Who may touch which tenant in the admin API. Another tenant's objects answer 404, never 403,
so a tenant cannot even learn that they exist."""

from __future__ import annotations

from typing import Any

from modelyard.errors import AuthenticationError, InvalidRequest, NotFound, PermissionDenied
from modelyard.tenancy.records import Principal
from modelyard.tenancy.service import Tenancy


def principal_of(request: Any) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise AuthenticationError("This route needs an API key.")
    return principal  # type: ignore[no-any-return]


def tenancy_of(request: Any) -> Tenancy:
    tenancy = getattr(request.state, "tenancy", None)
    if tenancy is None:
        raise NotFound("Tenancy is not configured on this server.")
    return tenancy  # type: ignore[no-any-return]


def require_system_admin(p: Principal) -> None:
    if not p.is_system_admin:
        raise PermissionDenied("This route needs a system admin key.")


def readable_tenant(p: Principal, tenant: str | None) -> str | None:
    """The tenant to read for ``?tenant=`` (``None``: every tenant, system admins only)."""
    if tenant is None:
        return None if p.is_system_admin else p.tenant_id
    if not p.may_read(tenant):
        raise NotFound(f"tenant `{tenant}` does not exist")
    return tenant


def managed_tenant(p: Principal, tenant: str | None) -> str:
    """The tenant a write applies to; a tenant ``admin`` key may only name its own."""
    tenant = tenant if tenant is not None else p.tenant_id
    if tenant is None:
        raise InvalidRequest("name the tenant", param="tenant")
    if not p.may_manage(tenant):
        if p.may_read(tenant):
            raise PermissionDenied("This API key cannot change this tenant (it needs the `admin` scope).")
        raise NotFound(f"tenant `{tenant}` does not exist")
    return tenant
