"""Queue fixtures: a tiny random Llama served by the real local backend, and both queue implementations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.helpers import write_tiny_llama
from modelyard.settings import LocalModelSettings, QueueSettings, Settings


@pytest.fixture(scope="session", autouse=True)
def _hf_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def tiny_settings(tiny_dir: Path, tmp: Path, **queue: object) -> Settings:
    return Settings(
        data_dir=tmp,
        model_cache_dir=tmp / "models",
        local_models=[LocalModelSettings(name="tiny", source=str(tiny_dir))],
        embedders=[],
        engine={"max_model_len": 256, "num_threads": 1, "dtype": "float32"},
        queue=QueueSettings(**queue),  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(tiny_dir: Path, tmp_path: Path) -> Settings:
    return tiny_settings(tiny_dir, tmp_path, heartbeat_s=0.2, claim_idle_s=1.0, worker_ttl_s=1.0)
