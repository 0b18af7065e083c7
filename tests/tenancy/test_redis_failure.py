"""When the limit store (Redis) cannot be reached, ``tenancy.redis_failure`` decides: ``closed`` answers
503, ``open`` admits without limits; both log and count it, and neither falls back to per-process
counting."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import OverCapacity
from modelyard.protocol.openai import ChatCompletionRequest
from modelyard.settings import Settings
from modelyard.tenancy.limits import RedisLimitStore
from modelyard.tenancy.metering import Meter
from modelyard.tenancy.records import Principal
from modelyard.tenancy.service import Tenancy
from modelyard.tenancy.store import TenancyStore
from tenancy_support import SECRET

REQ = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
WHO = Principal(key_id="k", tenant_id="acme", scopes=frozenset({"inference"}), tenant_limits={"rpm": 1})


def _tenancy(tmp_path: Path, mode: str) -> Tenancy:
    settings = Settings(
        data_dir=tmp_path,
        local_models=[],
        embedders=[],
        tenancy={"redis_failure": mode, "redis_url": "redis://x"},
    )
    store = TenancyStore(f"sqlite:///{tmp_path / 'db.sqlite'}", SECRET.encode())
    store.migrate()
    limits = RedisLimitStore("redis://127.0.0.1:1/0", "x:", timeout_s=0.2)  # nothing listens on port 1
    return Tenancy(settings, store, limits, Meter(store, buffer=10, batch=10, flush_s=0.01))


async def test_fail_closed_refuses_with_503(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = _tenancy(tmp_path, "closed")
    with pytest.raises(OverCapacity):
        await t.admit(WHO, "m", "chat/completions", REQ, "r1")
    assert t.redis_errors == 1 and "refusing requests" in caplog.text
    await t.close()


async def test_fail_open_admits_every_request_without_counting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = _tenancy(tmp_path, "open")
    tickets = [
        await t.admit(WHO, "m", "chat/completions", REQ, f"r{i}") for i in range(3)
    ]  # rpm=1 not applied
    assert all(tk.rules == [] for tk in tickets)
    assert t.redis_errors == 3 and "admitting without limits" in caplog.text
    for tk in tickets:
        await t.settle(tk, {"prompt_tokens": 1, "completion_tokens": 1}, "ok")
    assert t.redis_errors == 3  # nothing was taken, so settling touches no counter
    await t.close()


async def test_money_budget_with_prices_refuses_before_overspend(tmp_path: Path) -> None:
    from modelyard.errors import RateLimited
    from modelyard.tenancy.limits import MemoryLimitStore
    from modelyard.tenancy.service import LimitExceeded

    settings = Settings(
        data_dir=tmp_path,
        local_models=[],
        embedders=[],
        tenancy={"prices": {"m": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}}},
    )
    store = TenancyStore(f"sqlite:///{tmp_path / 'db.sqlite'}", SECRET.encode())
    store.migrate()
    t = Tenancy(settings, store, MemoryLimitStore(), Meter(store, buffer=10, batch=10, flush_s=0.01))
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    )
    who = Principal(key_id="k", tenant_id="acme", scopes=frozenset({"inference"}), budget={"cost": 0.5})
    # worst case: (8 + 2 + 8) prompt tokens at 1/1k + 100 completion tokens at 2/1k = 0.218
    a = await t.admit(who, "m", "chat/completions", req, "a")
    b = await t.admit(who, "m", "chat/completions", req, "b")
    with pytest.raises(RateLimited) as refused:
        await t.admit(who, "m", "chat/completions", req, "c")
    assert isinstance(refused.value, LimitExceeded) and refused.value.headers["x-should-retry"] == "false"
    assert refused.value.code == "budget_exceeded"
    await t.settle(a, {"prompt_tokens": 10, "completion_tokens": 10}, "ok")  # cost 0.03, returns 0.188
    await t.admit(who, "m", "chat/completions", req, "c")
    await t.settle(b, None, "error_502")
    await t.meter.flush()
    costs = sorted(round(r["cost"], 6) for r in store.usage_rows("acme"))
    assert costs == [0.0, 0.03]
    await t.close()
