"""Tenancy test support (importable as ``tenancy_support``): fresh databases (SQLite file, and a fresh
schema on the real PostgreSQL), a Redis key prefix of our own, and the config of a ``modelyard serve``
with authentication required. PostgreSQL and Redis cases fail (never skip) when the servers are down.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from databases import fresh_database_url
from modelyard.tenancy.store import TenancyStore
from servers import RemoteServer

__all__ = ["fresh_database_url"]

REDIS_URL = "redis://127.0.0.1:6379/0"
SECRET = "test-secret-" + "x" * 40


@pytest.fixture
def store(database_url: str) -> Iterator[TenancyStore]:
    s = TenancyStore(database_url, SECRET.encode())
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"modelyard-test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def tenancy_config(upstream: str, database_url: str, **tenancy: Any) -> dict[str, Any]:
    from servers import remote_config

    return remote_config(
        upstream, database_url=database_url, tenancy={"auth": "required", "secret": SECRET, **tenancy}
    )


def bootstrap_admin(database_url: str) -> str:
    """A system admin key made straight in the store (what ``modelyard keys create --admin`` does)."""
    s = TenancyStore(database_url, SECRET.encode())
    s.migrate()
    try:
        return s.create_key(None, ["admin"], actor="test")[1]
    finally:
        s.close()


def tiny_tenancy_server(tmp: Path, base: Path) -> tuple[RemoteServer, str]:
    """``modelyard serve`` with tenancy on SQLite in ``tmp`` serving only the tiny model ``base`` as
    ``tiny`` (two adapter slots of rank 8), and a system admin key for it."""
    db = f"sqlite:///{tmp / 'db.sqlite'}"
    admin = bootstrap_admin(db)
    cfg = tenancy_config("http://127.0.0.1:9", db)
    cfg.update(
        deployments=[],
        fallbacks={},
        embedders=[],
        local_models=[{"name": "tiny", "source": str(base)}],
        engine={"max_model_len": 128, "max_loras": 2, "max_lora_rank": 8},
    )
    return RemoteServer(tmp, cfg, ready_timeout_s=300), admin
