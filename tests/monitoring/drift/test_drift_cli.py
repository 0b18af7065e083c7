"""``modelyard drift`` as a person or a CronJob runs it: a real subprocess against a SQLite store."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from drift_stream import BEFORE, HashingEmbedder, window
from modelyard.monitoring.drift.fingerprints import fingerprint
from modelyard.monitoring.drift.store import DriftStore, Sample
from modelyard.store.db import create_db_engine, migrate


def _cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", "drift", *args, "--database-url", db],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_create_run_list_report_and_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_db_engine(db)
    migrate(engine)
    rng, now = np.random.default_rng(0), datetime.now(UTC)
    texts = window(120, BEFORE, rng)
    store = DriftStore(engine)
    store.commit_samples(
        [
            Sample(i + 1, now - timedelta(hours=30 if i < 60 else 0.5), "chat", "acme", None, fingerprint(t),
                   "drain:1", 20, "en", False, "hashing", v)
            for i, (t, v) in enumerate(zip(texts, HashingEmbedder().embed(texts), strict=True))
        ],
        {},
    )  # fmt: skip
    engine.dispose()
    spec = tmp_path / "m.yaml"
    spec.write_text("id: chat\nscope: {model: chat}\nbaseline: {trailing: 2d}\nmin_samples: 20\n")
    done = _cli("create", str(spec), db=db)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == "chat"
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: b\nscope: {region: eu}\n")
    done = _cli("create", str(bad), db=db)
    assert done.returncode == 1 and "scope.region" in done.stderr
    done = _cli("run", "chat", db=db)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "no_drift"  # one distribution on both sides
    assert json.loads(_cli("run", db=db).stdout) == {}  # not due again within its interval
    listed = json.loads(_cli("list", "--json", db=db).stdout)
    assert listed[0]["latest"]["status"] == "no_drift"
    out = tmp_path / "r.html"
    done = _cli("report", "chat", "--out", str(out), db=db)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page and "http" not in page
    done = _cli("report", "missing", "--out", str(out), db=db)
    assert done.returncode == 1 and "no drift monitor" in done.stderr
    done = _cli("backfill", "--since", "7d", db=db)
    assert done.returncode == 0 and json.loads(done.stdout) == {"cursor": 0}


@pytest.mark.slow
def test_tasks_run_drift_consume_as_a_cronjob_embeds_the_request_log(tmp_path: Path) -> None:
    """``modelyard tasks run drift.consume`` (the CronJob path) with the real packaged MiniLM."""
    import os
    import uuid

    import sqlalchemy as sa

    from modelyard.monitoring.requestlog.records import RequestLogRow

    db = f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_db_engine(db)
    migrate(engine)
    texts = window(40, BEFORE, np.random.default_rng(1))
    with engine.begin() as conn:
        conn.execute(sa.insert(RequestLogRow), [{
            "request_id": uuid.uuid4().hex, "created_at": datetime.now(UTC) - timedelta(minutes=5), "tenant": "t",
            "model": "chat", "model_requested": "chat", "endpoint": "chat/completions", "stream": False,
            "status": 200, "latency_ms": 1.0, "prompt": [{"role": "user", "content": t}], "schema_version": 1,
        } for t in texts])  # fmt: skip
    env = {**os.environ, "MODELYARD_DATABASE_URL": db, "MODELYARD_DATA_DIR": str(tmp_path / "data"),
           "MODELYARD_MONITORING__DRIFT__ENABLED": "true", "MODELYARD_MONITORING__DRIFT__SAMPLE_RATE": "1",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    env.pop("MODELYARD_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "modelyard.cli", "tasks", "run", "drift.consume"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert DriftStore(engine).count_samples() == 40
    engine.dispose()
