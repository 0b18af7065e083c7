"""End to end on two real ``modelyard serve`` processes sharing one PostgreSQL database, driven by the
official ``openai`` client: bad experiments are clear 4xx errors that change nothing; a 50/50 split by
``user`` is sticky within and across the two gateways and says its variant in a header; the variant's
parameters reach the upstream unless the request sets its own; exposures are recorded, feedback is
accepted only for the caller's tenant's responses and joined; the report ends in a decision."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from databases import fresh_database_url
from servers import MockUpstream, RemoteServer
from tenancy_support import bootstrap_admin, tenancy_config

pytestmark = pytest.mark.postgres
USERS = [f"user-{i}" for i in range(40)]
EXPERIMENT = {
    "id": "warmth",
    "route": "ab-chat",
    "unit": "user",
    "primary_metric": "feedback",
    "guardrails": ["error_rate"],
    "variants": [
        {"name": "cool", "weight": 50, "model": "remote-chat", "params": {"temperature": 0.1}},
        {"name": "warm", "weight": 50, "model": "remote-chat", "params": {"temperature": 0.9}},
    ],
}


class Pair:
    def __init__(self, servers: list[RemoteServer], admin: str, keys: dict[str, str]) -> None:
        self.servers, self.admin, self.keys = servers, admin, keys

    def call(self, method: str, path: str, key: str | None = None, i: int = 0, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.admin}"}
        return httpx.request(method, self.servers[i].url + path, headers=headers, timeout=30, **kw)

    def client(self, i: int, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.servers[i].url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def pair(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp: Path = tmp_path_factory.mktemp("experiments")
    db_iter = fresh_database_url("postgres", tmp)
    db = next(db_iter)
    admin = bootstrap_admin(db)
    servers: list[RemoteServer] = []
    try:
        for i in range(2):
            config = tenancy_config(mock_upstream.url, db)
            config.update(embedders=[], experiments={"min_units": 10})
            (tmp / f"gw{i}").mkdir()
            servers.append(RemoteServer(tmp / f"gw{i}", config))
        p = Pair(servers, admin, {})
        for tenant in ("acme", "globex"):
            r = p.call("POST", "/admin/tenants", json={"id": tenant, "models": ["remote-chat"]})
            assert r.status_code == 201, r.text
            r = p.call("POST", "/admin/keys", json={"tenant": tenant, "scopes": ["inference", "admin"]})
            assert r.status_code == 201, r.text
            p.keys[tenant] = r.json()["key"]
        yield p
    finally:
        for s in servers:
            s.close()
        next(db_iter, None)


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err  # type: ignore[no-any-return]


def test_bad_experiments_are_clear_4xx_and_change_nothing(pair: Pair) -> None:
    bad = {**EXPERIMENT, "id": "bad", "variants": [{**v, "weight": 60} for v in EXPERIMENT["variants"]]}
    assert "sum to 120" in _error(pair.call("POST", "/admin/experiments", json=bad), 400)["message"]
    unknown = {
        **EXPERIMENT,
        "id": "bad",
        "variants": [EXPERIMENT["variants"][0], {"name": "x", "weight": 50, "model": "no-such-model"}],
    }
    assert "no-such-model" in _error(pair.call("POST", "/admin/experiments", json=unknown), 400)["message"]
    assert pair.call("GET", "/admin/experiments").json()["data"] == []


def test_a_sticky_50_50_split_across_two_gateways_with_feedback_and_a_report(pair: Pair) -> None:
    acme = pair.keys["acme"]
    r = pair.call("POST", "/admin/experiments", acme, json=EXPERIMENT)
    assert r.status_code == 201, r.text
    assert r.json()["tenant"] == "acme" and r.json()["status"] == "draft"
    assert pair.call("POST", "/admin/experiments/warmth/start", acme).json()["status"] == "running"
    second = {**EXPERIMENT, "id": "warmth-2"}
    assert pair.call("POST", "/admin/experiments", acme, json=second).status_code == 201
    assert "warmth" in _error(pair.call("POST", "/admin/experiments/warmth-2/start", acme), 409)["message"]
    assert pair.call("GET", "/admin/experiments/warmth-2", acme).json()["status"] == "draft"
    _error(pair.call("GET", "/admin/experiments/warmth", pair.keys["globex"]), 404)
    time.sleep(0.6)  # the other gateway's book follows within registry_poll_s (0.2 s)

    seen: dict[str, set[str]] = {}
    responses: dict[str, str] = {}
    clients = [pair.client(0, acme), pair.client(1, acme)]
    for round_ in range(2):
        for j, user in enumerate(USERS):
            raw = clients[(j + round_) % 2].chat.completions.with_raw_response.create(
                model="ab-chat", messages=[{"role": "user", "content": "hi"}], user=user, max_tokens=4
            )
            header = raw.headers["x-modelyard-experiment"]
            assert header.startswith("warmth:")
            variant = header.split(":", 1)[1]
            seen.setdefault(user, set()).add(variant)
            responses[raw.parse().id] = variant
    assert all(len(v) == 1 for v in seen.values()), "a user changed variant"
    counts = Counter(next(iter(v)) for v in seen.values())
    assert set(counts) == {"cool", "warm"} and min(counts.values()) >= 10

    wrong = pair.call(
        "POST",
        "/v1/feedback",
        pair.keys["globex"],
        json={"response_id": next(iter(responses)), "thumbs": "up"},
    )
    _error(wrong, 404)
    _error(
        pair.call("POST", "/v1/feedback", acme, json={"response_id": "x", "thumbs": "up", "score": 3}), 400
    )
    for k, (rid, variant) in enumerate(responses.items()):
        thumbs = "up" if variant == "warm" else "down"
        r = pair.call("POST", "/v1/feedback", acme, i=k % 2, json={"response_id": rid, "thumbs": thumbs})
        assert r.status_code == 201, r.text
        assert r.json()["variant"] == variant

    deadline = time.monotonic() + 20
    while True:
        doc = pair.call("GET", "/admin/experiments/warmth/report", acme).json()
        units = {n: v["units"] for n, v in doc["variants"].items()}
        if sum(units.values()) == len(USERS) and all(
            v["metrics"]["error_rate"]["n"] == units[n] for n, v in doc["variants"].items()
        ):
            break
        assert time.monotonic() < deadline, f"exposures or request log rows missing: {doc['variants']}"
        time.sleep(0.5)
    assert sum(v["requests"] for v in doc["variants"].values()) == 2 * len(USERS)
    assert doc["variants"]["warm"]["metrics"]["feedback"]["mean"] == 1.0
    assert doc["variants"]["cool"]["metrics"]["feedback"]["mean"] == 0.0
    assert doc["srm"]["passed"]
    assert doc["decision"]["action"] == "ship" and doc["decision"]["variant"] == "warm", doc["decision"]
    scraped = sum(
        float(line.rsplit(" ", 1)[1])
        for i in range(2)
        for line in pair.call("GET", "/metrics", i=i).text.splitlines()
        if line.startswith('modelyard_experiment_exposures_total{experiment="warmth"')
    )
    assert scraped == 2 * len(USERS)  # both gateways' counters together
    page = pair.call("GET", "/admin/experiments/warmth/report?format=html", acme)
    assert page.status_code == 200 and "data:image/png;base64," in page.text and "ship" in page.text


def test_the_variants_parameters_reach_the_upstream_and_the_request_wins(
    pair: Pair, mock_upstream: MockUpstream
) -> None:
    acme = pair.client(0, pair.keys["acme"])
    by_variant: dict[str, str] = {}
    for user in USERS:
        raw = acme.chat.completions.with_raw_response.create(
            model="ab-chat", messages=[{"role": "user", "content": "hi"}], user=user, max_tokens=2
        )
        variant = raw.headers.get("x-modelyard-experiment", "").split(":")[-1]
        by_variant.setdefault(variant, user)
    for variant, temperature in (("cool", 0.1), ("warm", 0.9)):
        acme.chat.completions.create(
            model="ab-chat",
            messages=[{"role": "user", "content": "hi"}],
            user=by_variant[variant],
            max_tokens=2,
        )
        assert httpx.get(f"{mock_upstream.url}/last/mock").json()["temperature"] == temperature
    acme.chat.completions.create(
        model="ab-chat", messages=[{"role": "user", "content": "hi"}], user=by_variant["warm"],
        max_tokens=2, temperature=0.3,
    )  # fmt: skip
    assert httpx.get(f"{mock_upstream.url}/last/mock").json()["temperature"] == 0.3
    raw = acme.chat.completions.with_raw_response.create(
        model="remote-chat", messages=[{"role": "user", "content": "hi"}], user="user-1", max_tokens=2
    )
    assert "x-modelyard-experiment" not in raw.headers  # another route passes through


def test_a_request_without_a_unit_is_not_in_the_experiment(pair: Pair) -> None:
    with pytest.raises(openai.NotFoundError):  # no unit: the route name itself is not a model
        pair.client(0, pair.keys["acme"]).chat.completions.create(
            model="ab-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
