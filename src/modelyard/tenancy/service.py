"""``Tenancy``: the per-server tenancy services (store, limit store, meter) and the admission contract.

Built in the app lifespan by :func:`start_tenancy`. For each inference request the gateway calls
:meth:`Tenancy.admit` (model access, rate limits, concurrency, budget reservation: one atomic step)
and, exactly once, :meth:`Tenancy.settle` with the usage the response reported (settles counters,
enqueues the usage record).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from modelyard.errors import ModelNotFound, OverCapacity, RateLimited
from modelyard.registry.prices import PriceBook
from modelyard.registry.records import Prices
from modelyard.registry.service import Registry
from modelyard.settings import AuthMode, Settings
from modelyard.tenancy.admission import completion_upper_bound, prompt_upper_bound, rate_rules
from modelyard.tenancy.budgets import budget_rules, cost_of, period_start
from modelyard.tenancy.keys import load_server_secret
from modelyard.tenancy.limits import (
    Decision,
    LimitBackendDown,
    LimitStore,
    MemoryLimitStore,
    RedisLimitStore,
    Rule,
    ceil_s,
)
from modelyard.tenancy.metering import Meter
from modelyard.tenancy.principal_cache import (
    EpochSource,
    PrincipalCache,
    RedisEpoch,
    RedisEpochBump,
    StoreEpoch,
)
from modelyard.tenancy.records import AdapterInfo, Principal, Usage
from modelyard.tenancy.store import TenancyStore

log = logging.getLogger("modelyard.tenancy")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AUTO_RECHECK_S = 1.0


class LimitExceeded(RateLimited):
    """429 with ``Retry-After`` and ``x-ratelimit-*`` headers."""

    def __init__(self, message: str, headers: dict[str, str], *, code: str = "rate_limit_exceeded") -> None:
        super().__init__(message, code=code)
        self.headers = headers


@dataclass(slots=True)
class Ticket:
    """One admitted request: what it reserved, to be settled exactly once."""

    principal: Principal
    model: str
    endpoint: str
    request_id: str
    rules: list[Rule]
    token_rules: list[int]  # indexes of rules charged in tokens (tpm, budget tokens)
    cost_rules: list[int]
    conc_rules: list[int]
    reserved_tokens: int
    reserved_cost: float
    price: Prices | None = None  # the model's price at admission; settlement charges the same
    started: float = field(default_factory=time.monotonic)
    first_byte: float | None = None
    adapter: AdapterInfo | None = None
    version: str | None = None
    settled: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``name``, ``name@alias``, ``name:3`` (version) or ``name:adapter`` -> (name, version, adapter)."""
    if "@" in ref:
        return ref.split("@", 1)[0], None, None
    if ":" in ref:
        base, suffix = ref.rsplit(":", 1)
        return (base, suffix, None) if suffix.isdigit() else (base, None, suffix)
    return ref, None, None


class Tenancy:
    def __init__(
        self,
        settings: Settings,
        store: TenancyStore,
        limits: LimitStore,
        meter: Meter,
        prices: PriceBook | None = None,
        epoch: EpochSource | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.tenancy
        self.store = store
        self.limits = limits
        self.meter = meter
        self.prices = prices or PriceBook(Registry("", engine=store.engine), self.cfg.prices)
        self._price_poll: asyncio.Task[None] | None = None
        self.epoch = epoch
        self.auth_cache = (
            PrincipalCache(self.cfg.auth_cache_size, self.cfg.auth_cache_ttl_s)
            if epoch is not None and self.cfg.auth_cache_size > 0 and self.cfg.auth_cache_ttl_s > 0
            else None
        )
        self._auth_seen = False
        self._auth_checked_at = -AUTO_RECHECK_S
        self._seeded: set[str] = set()
        self.redis_errors = 0
        # Called with every usage record as it is metered (OpenTelemetry metrics); must not raise.
        self.usage_listeners: list[Callable[[Usage], None]] = []

    # ---- authentication -------------------------------------------------------------------------
    async def anonymous_allowed(self) -> bool:
        mode = self.cfg.auth
        if mode is AuthMode.ANONYMOUS:
            return True
        if mode is AuthMode.REQUIRED or self.settings.host not in LOOPBACK:
            return False
        # Once a system key exists auth stays on (revoking it never reopens the server). Until then the
        # store is asked at most every AUTO_RECHECK_S, so a new admin key takes effect within that time.
        now = time.monotonic()
        if not self._auth_seen and now - self._auth_checked_at >= AUTO_RECHECK_S:
            self._auth_seen = await anyio.to_thread.run_sync(self.store.has_admin_key)
            self._auth_checked_at = now
        return not self._auth_seen

    async def authenticate(self, token: str) -> Principal:
        """The caller behind ``token``: from the principal cache while the auth epoch it was filed under
        is current (see ``principal_cache``), else from the store."""
        digest = self.store.digest(token)
        cache, epoch = self.auth_cache, None
        if cache is not None and self.epoch is not None:
            epoch = await self.epoch.read()  # before the store query: a change in between is seen next time
            if epoch is not None and (hit := cache.get(digest, epoch)) is not None:
                return hit
        if self.store.inline_reads:
            principal, expires_at = self.store.verify(digest)
        else:
            principal, expires_at = await anyio.to_thread.run_sync(self.store.verify, digest)
        if cache is not None and epoch is not None:
            cache.put(digest, epoch, principal, expires_at)
        return principal

    # ---- admission ------------------------------------------------------------------------------
    async def check_model(self, principal: Principal, ref: str) -> tuple[str, AdapterInfo | None, str | None]:
        """(model ref to route, the private adapter if ``ref`` names one, version). Anything the caller
        may not use is a 404 worded exactly like a model that does not exist."""
        base, version, adapter_name = split_ref(ref)
        missing = ModelNotFound(
            f"The model `{ref}` does not exist or you do not have access to it.", param="model"
        )
        if not principal.may_use(base):
            raise missing
        if adapter_name is None:
            return ref, None, version
        owner = None if principal.is_system_admin else principal.tenant_id
        if owner is None and not principal.is_system_admin:
            raise missing
        adapter = await anyio.to_thread.run_sync(self.store.find_adapter, owner, base, adapter_name)
        if adapter is None:
            raise missing
        return base, adapter, None

    async def admit(
        self, principal: Principal, model: str, endpoint: str, parsed: Any, request_id: str
    ) -> Ticket:
        prompt_ub = prompt_upper_bound(parsed)
        tokens = prompt_ub + completion_upper_bound(parsed, self.settings.limits.default_max_tokens)
        price = self.prices.price(split_ref(model)[0])  # in memory: no query per request
        cost = cost_of(price, prompt_ub, tokens - prompt_ub)
        rules: list[Rule] = []
        if principal.tenant_id is not None:
            rules += rate_rules(f"tenant:{principal.tenant_id}", principal.tenant_limits, model, tokens)
        if principal.key_id is not None:
            rules += rate_rules(f"key:{principal.key_id}", principal.key_limits, model, tokens)
        n_rate = len(rules)
        if principal.tenant_id is not None and principal.budget:
            start = period_start(self.cfg.budget_period)
            b_rules = budget_rules(
                principal.tenant_id, principal.budget, self.cfg.budget_period, tokens, cost, start
            )
            await self._seed(principal.tenant_id, b_rules, start)
            rules += b_rules
        ticket = Ticket(
            principal,
            model,
            endpoint,
            request_id,
            rules,
            [i for i, r in enumerate(rules) if r.key.endswith((":tpm", ":tokens"))],
            [i for i, r in enumerate(rules) if r.key.endswith(":cost")],
            [i for i, r in enumerate(rules) if r.key.endswith(":conc")],
            tokens,
            cost,
            price,
        )
        if not rules:
            return ticket
        try:
            decision = await self.limits.acquire(rules)
        except LimitBackendDown as exc:
            self._backend_down(exc)
            ticket.rules = []  # nothing was taken, so nothing is given back
            return ticket
        if not decision.allowed:
            raise self._refusal(rules, decision, n_rate)
        ticket.headers = self._headers(rules, decision)
        return ticket

    def _backend_down(self, exc: Exception) -> None:
        self.redis_errors += 1
        if self.cfg.redis_failure == "closed":
            log.error("limit store unreachable (%s); refusing requests (tenancy.redis_failure=closed)", exc)
            raise OverCapacity("Rate limiting is unavailable; retry shortly.") from exc
        log.error("limit store unreachable (%s); admitting without limits (tenancy.redis_failure=open)", exc)

    async def _seed(self, tenant_id: str, rules: list[Rule], start: datetime) -> None:
        todo = [r for r in rules if r.key not in self._seeded]
        if not todo:
            return
        tokens, cost = await anyio.to_thread.run_sync(self.store.spent, tenant_id, start)
        for r in todo:
            try:
                await self.limits.seed(r.key, float(cost if r.key.endswith(":cost") else tokens), r.ttl_s)
            except LimitBackendDown as exc:
                self._backend_down(exc)
                return
            self._seeded.add(r.key)

    def _headers(self, rules: list[Rule], decision: Decision) -> dict[str, str]:
        h: dict[str, str] = {}
        for r, left in zip(rules, decision.remaining, strict=False):
            kind = "requests" if r.key.endswith(":rpm") else "tokens" if r.key.endswith(":tpm") else None
            if kind is None or f"x-ratelimit-limit-{kind}" in h:
                continue
            h[f"x-ratelimit-limit-{kind}"] = str(int(r.capacity))
            h[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(left)))
            h[f"x-ratelimit-reset-{kind}"] = f"{(r.capacity - left) * 60.0 / r.capacity:.3f}s"
        return h

    def _refusal(self, rules: list[Rule], decision: Decision, n_rate: int) -> LimitExceeded:
        rule = rules[decision.refused]
        retry = ceil_s(decision.retry_after_s)
        if decision.refused >= n_rate:
            what = "token" if rule.key.endswith(":tokens") else "spend"
            return LimitExceeded(
                f"The {what} budget of this tenant for the current {self.cfg.budget_period} is exhausted "
                f"(limit {rule.capacity:g}; this request reserves up to {rule.amount:g}). "
                "Ask an administrator to raise it or wait for the next period.",
                {"x-should-retry": "false"},
                code="budget_exceeded",
            )
        kind = rule.key.rsplit(":", 1)[1]
        what = {"rpm": "requests per minute", "tpm": "tokens per minute", "conc": "concurrent requests"}[kind]
        scope = rule.key.split(":")[1]
        headers = {"retry-after": str(retry)}
        if kind in ("rpm", "tpm"):
            k = "requests" if kind == "rpm" else "tokens"
            headers |= {
                f"x-ratelimit-limit-{k}": str(int(rule.capacity)),
                f"x-ratelimit-remaining-{k}": "0",
                f"x-ratelimit-reset-{k}": f"{decision.retry_after_s:.3f}s",
            }
        return LimitExceeded(
            f"Rate limit reached for {scope} on {what}: limit {rule.capacity:g}. "
            f"Please try again in {retry}s.",
            headers,
        )

    # ---- settlement -----------------------------------------------------------------------------
    async def settle(
        self, ticket: Ticket, usage: dict[str, Any] | None, status: str, streamed_chunks: int = 0
    ) -> None:
        """Return the unused reservation, free the concurrency slot and meter the request (once)."""
        if ticket.settled:
            return
        ticket.settled = True
        usage = usage or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        if not usage and status == "disconnected":
            completion = streamed_chunks
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        cost = cost_of(ticket.price, prompt, completion)
        if ticket.rules:
            deltas = [0.0] * len(ticket.rules)
            for i in ticket.token_rules:
                deltas[i] = min(0.0, prompt + completion - ticket.reserved_tokens)
            for i in ticket.cost_rules:
                deltas[i] = min(0.0, cost - ticket.reserved_cost)
            for i in ticket.conc_rules:
                deltas[i] = -1.0
            idx = [i for i, d in enumerate(deltas) if d != 0.0]
            try:
                await self.limits.adjust([ticket.rules[i] for i in idx], [deltas[i] for i in idx])
            except LimitBackendDown as exc:
                self.redis_errors += 1
                log.error("limit store unreachable while settling %s: %s", ticket.request_id, exc)
        end = time.monotonic()
        first = ticket.first_byte or end
        p = ticket.principal
        record = Usage(
            id=uuid.uuid4().hex,
            request_id=ticket.request_id,
            tenant_id=p.tenant_id,
            key_id=p.key_id,
            model=ticket.model,
            endpoint=ticket.endpoint,
            status=status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            queue_ms=(first - ticket.started) * 1000.0,
            engine_ms=(end - ticket.started) * 1000.0,
            cost=cost,
            version=ticket.version,
            adapter=ticket.adapter.name if ticket.adapter else None,
        )
        for listener in self.usage_listeners:
            listener(record)
        await self.meter.record(record)

    def start_price_refresh(self, interval_s: float) -> None:
        """Load the registry prices now and pick up changes every ``interval_s`` (``registry_poll_s``)."""
        self._price_poll = asyncio.create_task(self.prices.poll(interval_s), name="price-refresh")

    async def close(self) -> None:
        if self._price_poll is not None:
            self._price_poll.cancel()
            await asyncio.gather(self._price_poll, return_exceptions=True)
        await self.meter.close()
        await self.limits.close()
        if self.epoch is not None:
            await self.epoch.close()
        self.store.close()


async def start_tenancy(settings: Settings) -> Tenancy:
    cfg = settings.tenancy
    secret = load_server_secret(cfg.secret, settings.resolved_data_dir)
    store = open_store(settings, secret)
    await anyio.to_thread.run_sync(store.migrate)
    limits: LimitStore = (
        RedisLimitStore(cfg.redis_url, cfg.redis_prefix) if cfg.redis_url else MemoryLimitStore()
    )
    epoch: EpochSource | None = None
    if cfg.redis_url:
        epoch = RedisEpoch(cfg.redis_url, cfg.redis_prefix)
    elif store.inline_reads:  # SQLite: the newest audit id is a safe epoch (see principal_cache)
        epoch = StoreEpoch(store.epoch_reader)
    meter = Meter(store, buffer=cfg.metering_buffer, batch=cfg.metering_batch, flush_s=cfg.metering_flush_s)
    meter.start()
    tenancy = Tenancy(settings, store, limits, meter, epoch=epoch)
    await anyio.to_thread.run_sync(tenancy.prices.refresh)
    tenancy.start_price_refresh(settings.registry_poll_s)
    return tenancy


def open_store(settings: Settings, secret: bytes) -> TenancyStore:
    """The tenancy store of ``settings``; with ``tenancy.redis_url`` every audited change bumps the auth
    epoch there (gateways and the CLI alike), so cached principals of every process are dropped."""
    store = TenancyStore(settings.resolved_database_url, secret)
    if settings.tenancy.redis_url:
        store.on_change.append(RedisEpochBump(settings.tenancy.redis_url, settings.tenancy.redis_prefix))
    return store
