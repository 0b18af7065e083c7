from dataclasses import dataclass

import pytest

from modelyard.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelNotFound,
    OverCapacity,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from modelyard.monitoring.labels import failure_cause, rejection_reason, tenant_label


@dataclass
class P:
    tenant_id: str | None
    anonymous: bool = False


def test_tenant_label_sources() -> None:
    assert tenant_label({}) == "anonymous"
    assert tenant_label({"principal": P("t-42")}) == "t-42"
    assert tenant_label({"principal": P(None)}) == "system"
    assert tenant_label({"principal": P(None, anonymous=True)}) == "anonymous"
    assert tenant_label({"tenant": "acme"}) == "acme"


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (InvalidRequest("x"), "invalid_request"),
        (ContextLengthExceeded("x"), "context_length_exceeded"),
        (ModelNotFound("x"), "not_found"),
        (RateLimited("x"), "rate_limit"),
        (RateLimited("x", code="budget_exceeded"), "budget"),
        (InvalidRequest("x", code="guardrail_blocked"), "guardrail"),
        (OverCapacity("x"), "over_capacity"),
        (UpstreamError("x"), "upstream"),
        (UpstreamTimeout("x"), "timeout"),
        (EngineError("x"), "engine"),
        (ValueError("boom"), "internal"),
    ],
)
def test_failure_causes_are_a_closed_set(exc: Exception, cause: str) -> None:
    assert failure_cause(exc) == cause


def test_rejections() -> None:
    assert rejection_reason("rate_limit") == "rate_limit" and rejection_reason("budget") == "budget"
    assert rejection_reason("upstream") is None
