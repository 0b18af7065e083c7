"""Engine factory and programmatic Alembic migrations for the metadata store.

SQLite connections run in WAL mode with foreign keys on, and SQLAlchemy (not the ``sqlite3``
module) emits ``BEGIN`` so that transactional DDL works and write transactions can take the write
lock up front (``BEGIN IMMEDIATE``): a read-then-write transaction never fails half-way with
"database is locked" because another writer got in between. Ask for that with
``engine.execution_options(write=True)``; PostgreSQL ignores the option.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import DeclarativeBase

from modelyard.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
# Any constant works; it only has to be the same for every process migrating this database.
_PG_MIGRATION_LOCK_KEY = 0x6D6F64656C79  # "modely"

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base shared by every table of the metadata store."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def default_database_url() -> str:
    """``MODELYARD_DATABASE_URL`` if set, else the SQLite file ``~/.local/share/modelyard/modelyard.db``.

    Reads the environment when called, never at import.
    """
    url = os.environ.get("MODELYARD_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{Path('~/.local/share/modelyard/modelyard.db').expanduser()}"


def create_db_engine(database_url: str) -> Engine:
    """An engine for ``database_url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    For a SQLite file the parent folder is created. Raises :class:`ConfigError` for a URL that
    cannot be parsed or names an unsupported database.
    """
    try:
        url = make_url(database_url)
    except Exception as exc:  # sqlalchemy raises ArgumentError; report it as a setting error
        raise ConfigError(f"invalid database URL {database_url!r}: {exc}") from exc
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.get_driver_name() not in ("psycopg", ""):
            raise ConfigError(f"unsupported PostgreSQL driver in {database_url!r}: use postgresql+psycopg://")
        return create_engine(url.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    if backend != "sqlite":
        raise ConfigError(
            f"unsupported database {backend!r} in {database_url!r}: use sqlite:/// or postgresql+psycopg://"
        )
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    _configure_sqlite(engine)
    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent, so only the first connection of a new file does it).

    Several connections opening a brand-new file race for the switch, and SQLite answers the losers
    "database is locked" at once instead of calling the busy handler; they retry, up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations; no ``alembic.ini`` is needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision``; idempotent and safe when several processes start at once.

    The whole upgrade runs in one transaction that first takes a database-wide lock (an advisory lock
    on PostgreSQL, the write lock on SQLite), so concurrent callers wait and then find nothing to do.
    """
    config = alembic_config()
    with engine.execution_options(write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
