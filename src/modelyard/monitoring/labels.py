"""Bounded metric labels: where the tenant comes from, and the closed sets of causes and reasons.

Every label value a metric carries comes from here, so cardinality is bounded by construction:
models are served names (anything else is ``unknown``), tenants are the authenticated tenant's id
(``anonymous`` until auth says otherwise), causes and reasons are closed vocabularies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.errors import ModelyardError

ANONYMOUS = "anonymous"
SYSTEM = "system"
UNKNOWN_MODEL = "unknown"
OTHER = "other"
MAX_PROMPT_LABELS = 200  # distinct prompt versions a metric tells apart; later ones count as `other`
DISCONNECT_STATUS = 499  # nginx's "client closed request"

FAILURE_CAUSES = frozenset(
    {
        "invalid_request",
        "context_length_exceeded",
        "payload_too_large",
        "authentication",
        "permission",
        "not_found",
        "rate_limit",
        "budget",
        "guardrail",
        "over_capacity",
        "upstream",
        "timeout",
        "engine",
        "internal",
    }
)
REJECTION_CAUSES = {"rate_limit": "rate_limit", "budget": "budget", "guardrail": "guardrail"}
# GenAI semantic-convention ``gen_ai.operation.name`` of each OpenAI endpoint.
OPERATIONS = {
    "chat/completions": "chat",
    "chat/completions/ws": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}


class BoundedValues:
    """Label values from an open set (prompt versions), capped: the first ``cap`` distinct values
    pass through, every later new one reads as :data:`OTHER`, so a metric's cardinality stays bounded
    however many versions are pushed."""

    __slots__ = ("_cap", "_seen")

    def __init__(self, cap: int = MAX_PROMPT_LABELS) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._cap:
            return OTHER
        self._seen.add(value)
        return value


def operation_name(endpoint: str) -> str:
    return OPERATIONS.get(str(endpoint), str(endpoint))


def tenant_of(tenant_id: str | None, key_id: str | None, *, anonymous: bool | None = None) -> str:
    """The tenant label of a caller: its tenant id, ``system`` for a system key, else ``anonymous``."""
    if tenant_id is not None:
        return str(tenant_id)
    is_anonymous = key_id is None if anonymous is None else anonymous
    return ANONYMOUS if is_anonymous else SYSTEM


def tenant_label(state: Mapping[str, Any] | Any) -> str:
    """The tenant of a request from its ASGI ``scope["state"]`` (or ``request.state``).

    The one place that knows where tenancy puts it: the auth middleware's ``principal``
    (``tenant_id``; a system key without a tenant is ``system``), else ``tenant`` as a string or an
    object with ``id`` / ``name``. Without either the request is ``anonymous``.
    """

    def get(name: str) -> Any:
        return state.get(name) if isinstance(state, Mapping) else getattr(state, name, None)

    principal = get("principal")
    if principal is not None:
        return tenant_of(
            getattr(principal, "tenant_id", None), None, anonymous=getattr(principal, "anonymous", True)
        )
    tenant = get("tenant")
    if tenant is None:
        return ANONYMOUS
    if isinstance(tenant, str):
        return tenant or ANONYMOUS
    for attr in ("id", "name"):
        value = getattr(tenant, attr, None)
        if value is not None:
            return str(value)
    return ANONYMOUS


def failure_cause(exc: BaseException) -> str:
    """A closed-vocabulary cause for a failed request (one of :data:`FAILURE_CAUSES`)."""
    if not isinstance(exc, ModelyardError):
        return "internal"
    code = (exc.code or "").lower()
    kind = exc.error_type
    if "budget" in code or "quota" in code:
        return "budget"
    if "guardrail" in code or "content_filter" in code or "guardrail" in type(exc).__name__.lower():
        return "guardrail"
    if exc.status_code == 429:
        return "rate_limit"
    if code in ("context_length_exceeded", "payload_too_large", "timeout"):
        return code
    if code == "engine_error":
        return "engine"
    if code == "over_capacity":
        return "over_capacity"
    by_status = {401: "authentication", 403: "permission", 404: "not_found", 502: "upstream", 504: "timeout"}
    if exc.status_code in by_status:
        return by_status[exc.status_code]
    if kind == "invalid_request_error":
        return "invalid_request"
    return "internal"


def rejection_reason(cause: str) -> str | None:
    """``rate_limit`` / ``budget`` / ``guardrail`` when the cause is a policy rejection, else None."""
    return REJECTION_CAUSES.get(cause)
