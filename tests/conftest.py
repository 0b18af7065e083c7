"""Shared fixtures: a mock OpenAI upstream and a real ``modelyard serve`` subprocess.

The helpers live in ``tests/servers.py`` (importable as ``servers``: ``tests`` is on pytest's
``pythonpath``) so that test modules import them by a name no other conftest shadows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from databases import fresh_database_url
from servers import MockUpstream, RemoteServer, free_port, remote_config, stop_process


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[MockUpstream]:
    mock = MockUpstream(free_port())
    yield mock
    stop_process(mock.proc)


@pytest.fixture(scope="session")
def server(mock_upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    srv = RemoteServer(tmp_path_factory.mktemp("serve"), remote_config(mock_upstream.url))
    yield srv
    srv.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty metadata database (SQLite, and a fresh PostgreSQL schema), removed after."""
    yield from fresh_database_url(request.param, tmp_path)
