"""Budgets per tenant over a period: worst-case reservation at admission, settlement to the actual use.

A tenant's ``budget`` is ``{"tokens": int, "cost": float}`` (either or both) per ``budget_period``
(UTC day or month). Each is a capped counter in the limit store keyed by tenant and period start.
Admission reserves ``prompt upper bound + max_tokens * n`` tokens (and their price) in the same atomic
step as the rate limits; settlement adds ``actual - reserved`` (never positive), so concurrent
requests together can never pass the budget. A counter starts from what the usage ledger already
holds for the period (so a restart or a fresh Redis does not reset spend). Prices come from the
registry (``modelyard models price set``), else the ``tenancy.prices`` setting; a private adapter
is priced as its base model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelyard.registry.records import Prices
from modelyard.tenancy.limits import Rule


def period_start(period: str, at: datetime | None = None) -> datetime:
    at = at or datetime.now(UTC)
    if period == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_ttl_s(period: str) -> int:
    """Counters outlive their period by a day, then expire."""
    return int(timedelta(days=2 if period == "day" else 32).total_seconds())


def cost_of(price: Prices | None, prompt: float, completion: float) -> float:
    """What ``prompt`` + ``completion`` tokens cost at ``price`` (the :class:`PriceBook`'s answer for
    the model: registry first, then ``tenancy.prices``); no price costs 0."""
    return price.cost(prompt, completion) if price is not None else 0.0


def budget_rules(
    tenant_id: str, budget: dict[str, float], period: str, tokens: float, cost: float, start: datetime
) -> list[Rule]:
    stamp = start.strftime("%Y%m%d")
    ttl = period_ttl_s(period)
    rules = []
    if budget.get("tokens") is not None:
        rules.append(
            Rule(f"budget:{tenant_id}:{stamp}:tokens", "counter", float(budget["tokens"]), tokens, ttl)
        )
    if budget.get("cost") is not None:
        rules.append(Rule(f"budget:{tenant_id}:{stamp}:cost", "counter", float(budget["cost"]), cost, ttl))
    return rules
