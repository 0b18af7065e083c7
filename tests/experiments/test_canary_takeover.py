"""Two canary controller processes on one PostgreSQL database: exactly one checks the rollout; killed
mid-rollout, the other takes over, and the rollout goes through every step once, neither skipped nor
repeated, to promotion with the alias moved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from canary_traffic import register, traffic

from databases import fresh_database_url
from modelyard.experiments.canary import start_rollout
from modelyard.experiments.records import Experiment, Status
from modelyard.experiments.store import ExperimentStore
from modelyard.registry import Registry

pytestmark = pytest.mark.postgres
CONTROLLER = Path(__file__).with_name("canary_controller.py")
SRC = Path(__file__).resolve().parents[2] / "src"
EVERY_S = 0.2
DEADLINE_S = 60.0  # for each step; a step needs its 2 s minimum and one check after the traffic


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    urls = fresh_database_url("postgres", tmp_path)
    yield next(urls)
    next(urls, None)


def wait_for(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pids(out: Path) -> list[int]:
    return [int(line) for line in out.read_text().split()] if out.exists() else []


def test_a_killed_controller_hands_the_rollout_to_the_other(database: str, tmp_path: Path) -> None:
    registry = Registry(database)
    registry.migrate()
    store = ExperimentStore(registry.engine)
    register(registry)
    exp = start_rollout(store, registry, "chat", 2, min_duration_s=2, min_samples=10, inconclusive_limit=1000)
    out = tmp_path / "checks.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen([sys.executable, str(CONTROLLER), database, str(EVERY_S), str(out)], env=env)
        for _ in range(2)
    ]

    def current() -> Experiment:
        return store.get(exp.id)

    seq = [0]
    killed: int | None = None
    try:
        for step in range(4):
            wait_for(f"step {step}", lambda s=step: (current().rollout or {}).get("step") == s)  # type: ignore[misc]
            traffic(registry, store, exp.id, datetime.now(UTC), 10, seq=seq)
            if step == 2:  # two steps done: kill the controller that has been checking
                holders = set(pids(out))
                assert len(holders) == 1, f"more than one controller checked: {holders}"
                killed = holders.pop()
                os.kill(killed, signal.SIGKILL)
                before = len(pids(out))
        wait_for("promotion", lambda: current().status is Status.CONCLUDED)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    rollout = current().rollout or {}
    assert [(h["step"], h["action"]) for h in rollout["history"]] == [
        (0, "advance"), (1, "advance"), (2, "advance"), (3, "promote"),
    ]  # fmt: skip
    assert rollout["state"] == "promoted" and registry.get_model("chat").aliases["production"] == 2
    after = pids(out)[before:]
    assert after and killed not in after and len(set(after)) == 1
    registry.close()
