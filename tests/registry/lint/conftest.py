"""One model catalog for the whole lint test session (each tokenizer loads once)."""

from __future__ import annotations

import pytest

from modelyard.registry.lint import ModelCatalog
from modelyard.settings import Settings


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> ModelCatalog:
    """Default local models (the packaged ones); tokenizers load on first use, once per session."""
    return ModelCatalog(Settings(data_dir=tmp_path_factory.mktemp("lint-data")))
