"""Engine factory and migrations, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import modelyard.registry.models  # noqa: F401  (registers the registry tables)
from modelyard.errors import ConfigError
from modelyard.store import Base, create_db_engine, default_database_url, migrate
from modelyard.store.db import alembic_config

REGISTRY_TABLES = {"registry_state", "registry_models", "registry_model_versions", "registry_model_aliases"}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(engine) -> str | None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrate_from_empty_creates_schema_matching_the_orm(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert not REGISTRY_TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert REGISTRY_TABLES <= set(inspect(engine).get_table_names())
        assert _current(engine) == _head()
        with engine.connect() as conn:
            # The migrations and the ORM models describe the same schema.
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert conn.execute(text("SELECT id, revision FROM registry_state")).all() == [(1, 0)]
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_downgrade_round_trips(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        migrate(engine)
        migrate(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM registry_state")).scalar_one() == 1
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert not REGISTRY_TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert _current(engine) == _head()
    finally:
        engine.dispose()


def test_concurrent_migrations_from_several_engines_all_succeed(database_url: str) -> None:
    engines = [create_db_engine(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def run(engine) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            migrate(engine)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert _current(engines[0]) == _head()
        with engines[0].connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM registry_state")).scalar_one() == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "dir" / "m.db"
    engine = create_db_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert db.exists()
        migrate(engine)
        with pytest.raises(Exception, match="FOREIGN KEY"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO registry_model_versions (model_id, version, artifact_uri, architecture, "
                    "context_length, serving_params, created_at) VALUES (999, 1, 'x', 'a', 1, '{}', '2025-01-01')"
                )
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "postgresql+asyncpg://u@h/db"])
def test_bad_database_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="URL|database|driver"):
        create_db_engine(url)


def test_default_database_url_reads_the_environment_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELYARD_DATABASE_URL", raising=False)
    assert default_database_url().endswith("/.local/share/modelyard/modelyard.db")
    assert default_database_url().startswith("sqlite:///")
    monkeypatch.setenv("MODELYARD_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert default_database_url() == "postgresql+psycopg://u@h/db"


# The schema of the last release that landed: a database of that release, with rows in it, must upgrade
# to today's head without losing them. Move this forward when a release lands new migrations.
PREVIOUS_RELEASE = "0004_model_prices"


def test_one_head_and_the_previous_release_upgrades_with_its_rows(database_url: str) -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations have several heads {heads}: chain the newer ones in order"
    engine = create_db_engine(database_url)
    try:
        migrate(engine, PREVIOUS_RELEASE)
        rows = {
            "registry_models": "INSERT INTO registry_models (id, name, description, is_base_model, created_at) "
            "VALUES (1, 'smol', 'old', false, CURRENT_TIMESTAMP)",
            "registry_model_versions": "INSERT INTO registry_model_versions (model_id, version, artifact_uri, "
            "digest, architecture, context_length, serving_params, created_at) VALUES "
            "(1, 1, '/models/smol', NULL, 'llama', 512, '{}', CURRENT_TIMESTAMP)",
            "tenants": "INSERT INTO tenants (id, name, models, limits, budget, disabled, created_at) "
            "VALUES ('acme', 'acme', '[]', '{}', '{}', false, CURRENT_TIMESTAMP)",
            "request_log": "INSERT INTO request_log (id, request_id, created_at, tenant, model, model_requested, "
            "endpoint, stream, status, prompt, response, latency_ms, schema_version) VALUES (1, 'r1', "
            "CURRENT_TIMESTAMP, 'acme', 'smol', 'smol', 'chat/completions', false, 200, '[]', 'hi', 1.5, 1)",
        }
        with engine.begin() as conn:
            for sql in rows.values():
                conn.execute(text(sql))
        migrate(engine)
        assert _current(engine) == _head()
        with engine.connect() as conn:
            for table in rows:
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 1, table
            assert conn.execute(text("SELECT response FROM request_log")).scalar_one() == "hi"
    finally:
        engine.dispose()
