"""Versioned datasets on a real metadata store (SQLite and PostgreSQL): validation naming the line and
field, content-addressed immutable versions, seeded sampling from the request log, id-hash splits."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelyard.monitoring.requestlog.records import RequestLogRow
from modelyard.registry.dataset_logs import LogFilter, items_from_logs
from modelyard.registry.dataset_tables import DatasetVersionRow
from modelyard.registry.datasets import (
    DatasetError,
    DatasetNotFound,
    DatasetStore,
    digest_of,
    parse_jsonl,
    split_of,
)
from modelyard.store.db import create_db_engine, migrate

ITEMS = [
    {"id": "a", "input": [{"role": "user", "content": "2 + 2?"}], "expected": "4"},
    {"id": "b", "input": {"country": "France"}, "expected": "Paris", "metadata": {"topic": "geo"}},
    {"id": "c", "input": {"country": "Japan"}, "expected": "Tokyo", "context": "Asia"},
]


def jsonl(rows: list[object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> DatasetStore:
    engine = create_db_engine(database_url)
    migrate(engine)
    yield DatasetStore(engine, tmp_path / "data")
    engine.dispose()


@pytest.mark.parametrize(
    ("lines", "param", "words"),
    [
        ([ITEMS[0], "not an object"], "line 2", "JSON object"),
        ([ITEMS[0], {"id": "x"}], "line 2: input", "input"),
        ([{"id": "x", "input": [{"role": "robot", "content": "hi"}]}], "line 1: input[0].role", "role"),
        ([{"id": "x", "input": [{"role": "user"}]}], "line 1: input[0].content", "content"),
        ([{"id": "", "input": {}}], "line 1: id", "id"),
        ([ITEMS[0], ITEMS[0]], "line 2: id", "duplicate"),
        ([{**ITEMS[0], "answer": 1}], "line 1: answer", "unknown field"),
        ([{**ITEMS[0], "metadata": [1]}], "line 1: metadata", "mapping"),
    ],
)
def test_a_bad_line_names_its_number_and_field(lines: list[object], param: str, words: str) -> None:
    with pytest.raises(DatasetError) as info:
        parse_jsonl(jsonl(lines))
    assert info.value.param == param
    assert words in info.value.message


def test_limits_and_malformed_json() -> None:
    with pytest.raises(DatasetError, match="line 2: not valid JSON"):
        parse_jsonl(jsonl([ITEMS[0]]) + b"{nope\n")
    with pytest.raises(DatasetError, match="more than 2 items"):
        parse_jsonl(jsonl(ITEMS), max_items=2)
    with pytest.raises(DatasetError, match="line 1: longer than 10 bytes"):
        parse_jsonl(jsonl(ITEMS), max_line_bytes=10)
    with pytest.raises(DatasetError, match="no items"):
        parse_jsonl(b"\n\n")
    assert [i.id for i in parse_jsonl(jsonl(ITEMS) + b"\n")] == ["a", "b", "c"]


def test_versions_are_content_addressed_and_immutable(store: DatasetStore) -> None:
    items = parse_jsonl(jsonl(ITEMS))
    v1 = store.create("qa", items, source="f.jsonl", created_by="test")
    assert (v1.version, v1.item_count, v1.digest) == (1, 3, digest_of(items))
    assert store.path_of(v1.digest).is_file()
    # Key order in the file does not change the digest; unchanged content is the same version.
    reordered = parse_jsonl(jsonl([{k: r[k] for k in reversed(list(r))} for r in ITEMS]))
    assert store.create("qa", reordered, source="g.jsonl", created_by="test") == v1
    v2 = store.create("qa", items[:2], source="h.jsonl", created_by="test")
    assert v2.version == 2 and v2.digest != v1.digest
    assert store.get("qa").version == 2 and store.get("qa@1") == v1
    assert [i.id for i in store.items(store.get("qa@1"))] == ["a", "b", "c"]
    assert store.items(v1)[1].metadata == {"topic": "geo"}
    with pytest.raises(DatasetNotFound):
        store.get("qa@3")
    with pytest.raises(DatasetNotFound):
        store.get("nope")
    # A tampered artifact is refused, not silently read.
    store.path_of(v1.digest).write_bytes(b'{"id": "z", "input": {}}\n')
    with pytest.raises(DatasetError, match="do not match digest"):
        store.items(v1)


def test_tenant_datasets_are_invisible_to_other_tenants(store: DatasetStore) -> None:
    items = parse_jsonl(jsonl(ITEMS))
    store.create("acme-qa", items, source="f", created_by="t", tenant="acme")
    assert store.get("acme-qa", tenant="acme").tenant == "acme"
    with pytest.raises(DatasetNotFound):
        store.get("acme-qa", tenant="globex")
    assert [v.name for v in store.versions(tenant="globex")] == []


def test_split_is_deterministic_by_item_id(store: DatasetStore) -> None:
    rows = [{"id": f"q{i}", "input": {"n": i}} for i in range(200)]
    store.create("big", parse_jsonl(jsonl(rows)), source="f", created_by="t")
    train, test = store.split("big@1", 0.2, created_by="t")
    assert (train.name, test.name) == ("big-train", "big-test")
    assert train.item_count + test.item_count == 200
    assert 20 <= test.item_count <= 60
    test_ids = {i.id for i in store.items(test)}
    assert test_ids == {r["id"] for r in rows if split_of(str(r["id"]), 0.2) == "test"}
    assert not test_ids & {i.id for i in store.items(train)}
    again_train, again_test = store.split("big@1", 0.2, created_by="t")
    assert (again_train, again_test) == (train, test)  # same content: same versions


def _log(engine: sa.Engine, n: int) -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        {
            "request_id": f"req-{i}",
            "created_at": t0 + timedelta(minutes=i),
            "tenant": "acme" if i % 2 else "globex",
            "model": "smol" if i % 3 else "other",
            "model_requested": "smol" if i % 3 else "other",
            "endpoint": "chat",
            "stream": False,
            "status": 200 if i % 5 else 500,
            "prompt": [{"role": "user", "content": f"question {i} about cats"}] if i % 4 else "plain prompt",
            "response": f"answer {i}",
            "latency_ms": 1.0,
            "schema_version": 1,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(RequestLogRow), rows)


def test_from_logs_filters_and_samples_with_a_seed(store: DatasetStore) -> None:
    _log(store.engine, 60)
    f = LogFilter(tenant="acme", model="smol", since=datetime(2026, 12, 1, 0, 10, tzinfo=UTC))
    everything = items_from_logs(store.engine, f, n=None, seed=0)
    expect = {f"req-{i}" for i in range(10, 60) if i % 2 and i % 3 and i % 5}
    assert {i.id for i in everything} == expect
    first = items_from_logs(store.engine, f, n=5, seed=7)
    assert [i.id for i in first] == [i.id for i in items_from_logs(store.engine, f, n=5, seed=7)]
    assert [i.id for i in first] != [i.id for i in items_from_logs(store.engine, f, n=5, seed=8)]
    item = next(i for i in everything if i.id == "req-11")
    assert item.input == [{"role": "user", "content": "question 11 about cats"}]
    assert item.expected == "answer 11" and item.metadata["model"] == "smol"
    cats = items_from_logs(store.engine, LogFilter(prompt_contains="question 1"), n=None, seed=0)
    assert cats and all("question 1" in str(i.input) for i in cats)
    with pytest.raises(DatasetError, match="no logged request"):
        items_from_logs(store.engine, LogFilter(model="absent"), n=None, seed=0)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "datasets", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_create_show_split_and_a_bad_file_stores_nothing(tmp_path: Path) -> None:
    common = ["--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "--data-dir", str(tmp_path / "data")]
    good = tmp_path / "qa.jsonl"
    good.write_bytes(jsonl([{"id": f"q{i}", "input": {"n": i}} for i in range(20)]))
    r = run_cli("create", "qa", str(good), *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["item_count"] == 20
    r = run_cli("show", "qa@1", "--items", *common, cwd=tmp_path)
    assert r.returncode == 0 and len(json.loads(r.stdout)["items"]) == 20
    r = run_cli("split", "qa@1", "--test", "0.3", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == {"train", "test"}
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl([ITEMS[0], {"id": "b", "input": [{"role": "robot", "content": ""}]}]))
    before = sorted((tmp_path / "data").rglob("*"))
    r = run_cli("create", "bad", str(bad), *common, cwd=tmp_path)
    assert r.returncode == 2
    assert "line 2: input[0].role" in r.stderr
    assert sorted((tmp_path / "data").rglob("*")) == before
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as conn:
        names = {n for (n,) in conn.execute(sa.select(DatasetVersionRow.name))}
    engine.dispose()
    assert names == {"qa", "qa-train", "qa-test"}
