"""Alembic environment for the modelyard metadata store.

At run time :func:`modelyard.store.db.migrate` passes an open connection in
``config.attributes["connection"]``. For developers, ``alembic -x url=sqlite:///dev.db revision
--autogenerate -m "..."`` (with ``script_location`` pointing here) connects to the given URL.
"""

from __future__ import annotations

from alembic import context

import modelyard.experiments.models  # noqa: F401  (experiments, exposures, feedback)
import modelyard.jobs.models  # noqa: F401  (registers the jobs table)
import modelyard.monitoring.drift.models  # noqa: F401  (drift samples, state, monitors, runs)
import modelyard.monitoring.requestlog.records  # noqa: F401  (registers the request_log table)
import modelyard.rag.models  # noqa: F401  (RAG corpora, versions, aliases, documents, chunks)
import modelyard.registry.dataset_tables  # noqa: F401  (datasets and eval runs)
import modelyard.registry.models  # noqa: F401  (registers the registry tables on Base.metadata)
import modelyard.registry.prompt_models  # noqa: F401  (registers the prompt registry tables)
import modelyard.tenancy.models  # noqa: F401  (registers the tenancy tables)
from modelyard.store.db import Base, create_db_engine

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("pass the database with: alembic -x url=<database url> ...")
    engine = create_db_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
