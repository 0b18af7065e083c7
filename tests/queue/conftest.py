"""Queue fixtures: a tiny random Llama served by the real local backend, and both queue implementations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from queue_helpers import tiny_settings

from engine.helpers import write_tiny_llama
from modelyard.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _hf_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def settings(tiny_dir: Path, tmp_path: Path) -> Settings:
    return tiny_settings(tiny_dir, tmp_path, heartbeat_s=0.2, claim_idle_s=1.0, worker_ttl_s=1.0)
