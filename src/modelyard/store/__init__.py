"""The metadata store: one SQLAlchemy engine per database URL, and its Alembic migrations.

SQLite (a file under the data dir) is the embedded default; PostgreSQL is used through a
``postgresql+psycopg://`` URL. Tables of every feature share :class:`Base`'s metadata so one
migration history covers the whole database.
"""

from modelyard.store.db import Base, create_db_engine, default_database_url, migrate

__all__ = ["Base", "create_db_engine", "default_database_url", "migrate"]
