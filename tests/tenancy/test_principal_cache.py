"""The principal cache in one process: epochs on SQLite and Redis, the bound, expiry, and what happens
when the epoch cannot be read or bumped. The cross-process rule is in test_auth_cache_multiprocess.py."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from modelyard.errors import AuthenticationError, OverCapacity
from modelyard.settings import Settings
from modelyard.tenancy.principal_cache import EPOCH_KEY, PrincipalCache, RedisEpoch, RedisEpochBump
from modelyard.tenancy.records import Principal
from modelyard.tenancy.service import Tenancy, start_tenancy
from modelyard.tenancy.store import TenancyStore
from tenancy_support import REDIS_URL, SECRET

WHO = Principal(key_id="k", tenant_id="acme", scopes=frozenset({"inference"}))


def _settings(tmp_path: Path, database_url: str, **tenancy: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        local_models=[],
        embedders=[],
        database_url=database_url,
        tenancy={"secret": SECRET, **tenancy},
    )


@pytest.fixture
async def sqlite_tenancy(tmp_path: Path) -> AsyncIterator[Tenancy]:
    t = await start_tenancy(_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}"))
    yield t
    await t.close()


def _other_process_store(t: Tenancy) -> TenancyStore:
    """A second store on the same database (what the CLI or another gateway uses)."""
    return TenancyStore(t.settings.resolved_database_url, SECRET.encode())


async def test_sqlite_caches_and_sees_every_audited_change(sqlite_tenancy: Tenancy) -> None:
    t = sqlite_tenancy
    other = _other_process_store(t)
    other.create_tenant("acme", models=["m"], actor="test")
    info, key = other.create_key("acme", ["inference"], actor="test")
    assert (await t.authenticate(key)).models == frozenset({"m"})
    assert (await t.authenticate(key)).models == frozenset({"m"})
    assert t.auth_cache is not None and t.auth_cache.stats() == {"entries": 1, "hits": 1, "misses": 1}

    other.update_tenant("acme", models=["n"], actor="test")
    assert (await t.authenticate(key)).models == frozenset({"n"})  # limits / model access: next request
    other.revoke_key(info.id, actor="test")
    with pytest.raises(AuthenticationError):
        await t.authenticate(key)
    other.close()


async def test_sqlite_change_behind_the_stores_back_waits_for_the_epoch(sqlite_tenancy: Tenancy) -> None:
    """Control: the cache really answers (an unaudited write is not seen until the epoch moves)."""
    t = sqlite_tenancy
    other = _other_process_store(t)
    other.create_tenant("acme", models=["m"], actor="test")
    info, key = other.create_key("acme", ["inference"], actor="test")
    await t.authenticate(key)
    engine = create_engine(t.settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = '2020-01-01' WHERE id = :id"), {"id": info.id})
    engine.dispose()
    assert (await t.authenticate(key)).key_id == info.id
    other.create_tenant("other", actor="test")  # audited: the epoch moves
    with pytest.raises(AuthenticationError):
        await t.authenticate(key)
    other.close()


async def test_expiry_is_checked_on_a_hit(sqlite_tenancy: Tenancy) -> None:
    t = sqlite_tenancy
    other = _other_process_store(t)
    other.create_tenant("acme", models=["m"], actor="test")
    _, key = other.create_key(
        "acme", ["inference"], expires_at=datetime.now(UTC) + timedelta(hours=1), actor="t"
    )
    await t.authenticate(key)
    assert t.auth_cache is not None
    digest = t.store.digest(key)
    epoch = await t.epoch.read() if t.epoch else None
    assert epoch is not None
    # the same entry, but its key expired a second ago (no store change, no epoch move)
    t.auth_cache.put(digest, epoch, WHO, datetime.now(UTC) - timedelta(seconds=1))
    assert t.auth_cache.get(digest, epoch) is None
    other.close()


async def test_postgres_without_redis_does_not_cache(tmp_path: Path, database_url: str) -> None:
    t = await start_tenancy(_settings(tmp_path, database_url))
    try:
        if t.store.inline_reads:
            assert t.auth_cache is not None
        else:  # audit ids may commit out of order on PostgreSQL: no safe epoch without Redis
            assert t.auth_cache is None and t.epoch is None
    finally:
        await t.close()


def test_cache_is_bounded_and_ttl_limited() -> None:
    c = PrincipalCache(max_entries=2, ttl_s=3600)
    for d in ("a", "b", "c"):
        c.put(d, "1", WHO, None)
    assert len(c) == 2 and c.get("a", "1") is None and c.get("c", "1") is WHO
    assert c.get("c", "2") is None and len(c) == 1  # another epoch: dropped
    short = PrincipalCache(max_entries=2, ttl_s=0.0)
    short.put("a", "1", WHO, None)
    assert short.get("a", "1") is None


async def test_unreadable_epoch_bypasses_the_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    t = await start_tenancy(settings)
    await t.epoch.close() if t.epoch else None
    t.epoch = RedisEpoch("redis://127.0.0.1:1/0", "x:", timeout_s=0.2)  # nothing listens on port 1
    other = _other_process_store(t)
    other.create_tenant("acme", models=["m"], actor="test")
    info, key = other.create_key("acme", ["inference"], actor="test")
    try:
        await t.authenticate(key)
        await t.authenticate(key)
        assert t.auth_cache is not None and len(t.auth_cache) == 0  # nothing cached without an epoch
        assert t.epoch.errors == 2 and "auth epoch unreadable" in caplog.text
        other.revoke_key(info.id, actor="test")
        with pytest.raises(AuthenticationError):
            await t.authenticate(key)
    finally:
        other.close()
        await t.close()


def test_failed_bump_fails_the_change_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TenancyStore(f"sqlite:///{tmp_path / 'db.sqlite'}", SECRET.encode())
    store.migrate()
    store.on_change.append(RedisEpochBump("redis://127.0.0.1:1/0", "x:", timeout_s=0.2))
    with caplog.at_level(logging.ERROR), pytest.raises(OverCapacity) as err:
        store.create_tenant("acme", actor="test")
    assert err.value.code == "auth_epoch_unavailable" and "could not be bumped" in caplog.text
    assert store.get_tenant("acme").id == "acme"  # the change itself is committed
    store.close()


async def test_redis_epoch_moves_on_bump_and_never_returns_after_a_flush() -> None:
    prefix = f"modelyard-test:{secrets.token_hex(6)}:"
    epoch, bump = RedisEpoch(REDIS_URL, prefix), RedisEpochBump(REDIS_URL, prefix)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        e1 = await epoch.read()
        assert e1 is not None and await epoch.read() == e1
        bump()
        e2 = await epoch.read()
        assert e2 is not None and int(e2) == int(e1) + 1
        client.delete(prefix + EPOCH_KEY)  # Redis restarted or flushed
        e3 = await epoch.read()
        assert e3 not in (e1, e2)
    finally:
        client.delete(prefix + EPOCH_KEY)
        client.close()
        bump.close()
        await epoch.close()
