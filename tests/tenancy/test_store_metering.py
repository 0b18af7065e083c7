"""The tenancy store (SQLite and PostgreSQL) and the meter: keys, access records, idempotent usage."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from modelyard.errors import AuthenticationError, Conflict, InvalidRequest
from modelyard.tenancy.keys import key_digest, looks_like_key
from modelyard.tenancy.metering import Meter
from modelyard.tenancy.records import Usage
from modelyard.tenancy.store import TenancyStore
from tenancy_support import SECRET


def _usage(tenant: str = "acme", tokens: int = 3) -> Usage:
    return Usage(
        id=uuid.uuid4().hex,
        request_id=uuid.uuid4().hex,
        tenant_id=tenant,
        key_id=None,
        model="m",
        endpoint="chat/completions",
        status="ok",
        prompt_tokens=tokens,
        completion_tokens=tokens,
    )


def test_keys_hashed_with_the_server_secret(store: TenancyStore) -> None:
    store.create_tenant("acme", models=["m"], actor="t")
    info, plain = store.create_key("acme", ["inference"], actor="t")
    assert looks_like_key(plain) and plain.split("-")[1] == info.prefix
    p = store.authenticate(plain)
    assert p.tenant_id == "acme" and p.models == frozenset({"m"}) and p.key_id == info.id
    other = TenancyStore("sqlite://", b"y" * 40)  # a different secret never matches
    assert key_digest(b"y" * 40, plain) != key_digest(SECRET.encode(), plain)
    other.close()
    with pytest.raises(AuthenticationError):
        store.authenticate(plain + "x")


def test_revoked_expired_and_disabled_fail_alike(store: TenancyStore) -> None:
    store.create_tenant("acme", actor="t")
    k1, p1 = store.create_key("acme", ["inference"], actor="t")
    _, p2 = store.create_key(
        "acme", ["inference"], expires_at=datetime.now(UTC) + timedelta(seconds=0.3), actor="t"
    )
    _, p3 = store.create_key("acme", ["read"], actor="t")
    store.revoke_key(k1.id, actor="t")
    import time

    time.sleep(0.4)
    store.update_tenant("acme", disabled=True, actor="t")
    messages = set()
    for p in (p1, p2, p3):
        with pytest.raises(AuthenticationError) as e:
            store.authenticate(p)
        messages.add(e.value.message)
    assert len(messages) == 1


def test_key_validation(store: TenancyStore) -> None:
    store.create_tenant("acme", actor="t")
    with pytest.raises(InvalidRequest):
        store.create_key("acme", ["root"], actor="t")
    with pytest.raises(InvalidRequest):
        store.create_key(None, ["inference"], actor="t")
    with pytest.raises(InvalidRequest):
        store.create_tenant("Bad Name", actor="t")
    with pytest.raises(Conflict):
        store.create_tenant("acme", actor="t")
    assert not store.has_admin_key()
    store.create_key(None, ["admin"], actor="t")
    assert store.has_admin_key()


def test_usage_insert_is_idempotent_and_grouped(store: TenancyStore) -> None:
    a, b = _usage("acme", 2), _usage("globex", 5)
    store.insert_usage([a, b])
    store.insert_usage([a, b])  # a replayed batch
    rows = store.usage_rows()
    assert len(rows) == 2
    by_tenant = {r["tenant"]: r for r in store.usage_summary(group_by=["tenant"])}
    assert by_tenant["acme"]["prompt_tokens"] == 2 and by_tenant["globex"]["requests"] == 1
    assert store.spent("globex", datetime.now(UTC) - timedelta(days=1)) == (10, 0.0)
    with pytest.raises(InvalidRequest):
        store.usage_summary(group_by=["colour"])


async def test_meter_is_exact_under_concurrency_with_a_small_buffer(store: TenancyStore) -> None:
    meter = Meter(store, buffer=4, batch=3, flush_s=0.01)
    meter.start()
    records = [_usage("acme", i % 5) for i in range(200)]
    await asyncio.gather(*(meter.record(r) for r in records))
    await meter.close()
    rows = store.usage_rows("acme")
    assert len(rows) == 200
    assert sum(r["prompt_tokens"] for r in rows) == sum(r.prompt_tokens for r in records)
    assert meter.stats.buffer_full_waits > 0 and meter.stats.written == 200
