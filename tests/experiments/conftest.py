from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.experiments.store import ExperimentStore
from modelyard.registry import Registry


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    reg = Registry(database_url)
    reg.migrate()
    yield reg
    reg.close()


@pytest.fixture
def store(registry: Registry) -> ExperimentStore:
    return ExperimentStore(registry.engine)
