"""A migrated metadata database for the request-log tests, on every database of ``database_url``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from modelyard.store.db import create_db_engine, migrate


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
