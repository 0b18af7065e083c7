"""The scaled vector store: PostgreSQL with pgvector, one table per namespace in one schema.

Each namespace table has an HNSW index (``vector_cosine_ops``) and a GIN index on the metadata
tags. pgvector 0.6 filters *after* the HNSW scan, so a selective filter may return fewer than ``k``
hits; ``hnsw.ef_search`` is raised per query to ``max(40, 4 * k)`` to make that rarer (documented in
docs/rag.md). :class:`LocalPostgres` runs the PostgreSQL 16 + pgvector build that the ``pgserver``
package bundles on a TCP port and data folder of our choosing (tests, benchmarks, single-node use).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import Conflict, InvalidRequest
from modelyard.rag.vectors import (
    Hit,
    NamespaceNotFound,
    Record,
    check_namespace,
    check_where,
    dump_metadata,
    tags,
)


class PgVectorStore:
    name = "pgvector"

    def __init__(self, url: str, *, schema: str = "modelyard_vectors", pool_size: int = 8) -> None:
        check_namespace(schema)
        self._url = url.replace("postgresql+psycopg://", "postgresql://")
        self._schema = schema
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = queue.Queue[None]()
        for _ in range(pool_size):
            self._slots.put(None)
        with self._conn() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    def _connect(self) -> Any:
        import psycopg
        from pgvector.psycopg import register_vector

        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        try:
            register_vector(conn)
        except psycopg.ProgrammingError:  # the extension is created by __init__ on the first connection
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
        return conn

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        self._slots.get()
        try:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = self._connect()
            if conn.closed:
                conn = self._connect()
            try:
                yield conn
            except BaseException:
                conn.close()
                raise
            else:
                self._pool.put(conn)
        finally:
            self._slots.put(None)

    def _table(self, namespace: str) -> str:
        return f'"{self._schema}"."{check_namespace(namespace)}"'

    def _dimensions(self, conn: Any, namespace: str) -> int | None:
        row = conn.execute(
            "SELECT a.atttypmod FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attname = 'embedding'",
            (self._schema, namespace),
        ).fetchone()
        return None if row is None else int(row[0])

    def _require(self, conn: Any, namespace: str) -> int:
        dims = self._dimensions(conn, check_namespace(namespace))
        if dims is None:
            raise NamespaceNotFound(f"no vector namespace `{namespace}`")
        return dims

    def create_namespace(self, namespace: str, dimensions: int) -> None:
        t = self._table(namespace)
        with self._conn() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self._schema}.{namespace}",))
                existing = self._dimensions(conn, namespace)
                if existing is None:
                    conn.execute(
                        f"CREATE TABLE {t} (id text PRIMARY KEY, doc_id text NOT NULL, text text NOT NULL, "
                        f"tags text[] NOT NULL, metadata jsonb NOT NULL, embedding vector({int(dimensions)}) NOT NULL)"
                    )
                    conn.execute(
                        f'CREATE INDEX "{namespace}_hnsw" ON {t} USING hnsw (embedding vector_cosine_ops)'
                    )
                    conn.execute(f'CREATE INDEX "{namespace}_tags" ON {t} USING gin (tags)')
                elif existing != dimensions:
                    raise Conflict(
                        f"namespace `{namespace}` holds {existing}-dimensional vectors, not {dimensions}"
                    )

    def upsert(self, namespace: str, records: Sequence[Record]) -> None:
        if not records:
            return
        t = self._table(namespace)
        with self._conn() as conn:
            dims = self._require(conn, namespace)
            for r in records:
                if len(r.vector) != dims:
                    raise Conflict(
                        f"namespace `{namespace}` holds {dims}-dimensional vectors, not {len(r.vector)}"
                    )
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {t} (id, doc_id, text, tags, metadata, embedding) "
                    "VALUES (%s, %s, %s, %s, %s::jsonb, %s) ON CONFLICT (id) DO UPDATE SET "
                    "doc_id = EXCLUDED.doc_id, text = EXCLUDED.text, tags = EXCLUDED.tags, "
                    "metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding",
                    [
                        (r.id, r.doc_id, r.text, tags(r.metadata), dump_metadata(r.metadata),
                         np.asarray(r.vector, dtype=np.float32))
                        for r in records
                    ],
                )  # fmt: skip

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        t = self._table(namespace)
        with self._conn() as conn:
            self._require(conn, namespace)
            conn.execute(f"DELETE FROM {t} WHERE id = ANY(%s)", (list(ids),))

    def query(
        self, namespace: str, vector: np.ndarray, k: int, where: Mapping[str, str] | None = None
    ) -> list[Hit]:
        if k < 1:
            raise InvalidRequest("`top_k` is at least 1", param="top_k")
        t = self._table(namespace)
        wanted = check_where(where)
        vec = np.asarray(vector, dtype=np.float32)
        sql = f"SELECT id, doc_id, text, metadata, 1 - (embedding <=> %s) FROM {t}"
        params: list[Any] = [vec]
        if wanted:
            sql += " WHERE tags @> %s"
            params.append(wanted)
        sql += " ORDER BY embedding <=> %s LIMIT %s"
        params += [vec, k]
        with self._conn() as conn:
            try:
                with conn.transaction():
                    conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, 4 * k)}")
                    rows = conn.execute(sql, params).fetchall()
            except Exception as exc:
                if type(exc).__name__ == "UndefinedTable":
                    raise NamespaceNotFound(f"no vector namespace `{namespace}`") from None
                raise
        return [Hit(r[0], r[1], r[2], float(r[4]), dict(r[3])) for r in rows]

    def count(self, namespace: str) -> int:
        t = self._table(namespace)
        with self._conn() as conn:
            self._require(conn, namespace)
            return int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])

    def drop(self, namespace: str) -> None:
        t = self._table(namespace)
        with self._conn() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {t}")

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return


class LocalPostgres:
    """The ``pgserver`` package's PostgreSQL 16 + pgvector on ``127.0.0.1:port`` with data in ``data_dir``.

    As root, the server runs as the system user ``pgserver`` (PostgreSQL refuses root), created like
    ``pgserver`` itself does. :meth:`stop` is a fast shutdown; the folder stays for a restart.
    """

    def __init__(self, data_dir: Path, port: int) -> None:
        import warnings

        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pgserver import _commands  # type: ignore[import-untyped]

        self.data_dir, self.port = data_dir, port
        self._bin = Path(_commands.POSTGRES_BIN_PATH)
        self._user: str | None = None
        if os.geteuid() == 0:
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self._user = "pgserver"
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self._bin)
            ensure_folder_permissions(self._bin, 0o055)
            ensure_folder_permissions(self._bin.parent / "lib", 0o044)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(self._bin / args[0]), *args[1:]],
            check=True,
            timeout=timeout,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            import pwd

            from pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            entry = pwd.getpwnam(self._user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=utf8", "-U", "postgres")
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off"
        log = self.data_dir / "server.log"
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-o", opts, "-l", str(log), "start")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT to the postmaster, as ``pg_ctl -m fast`` sends), waiting for it to exit.

        Signalled directly rather than through ``pg_ctl`` running as ``pgserver``: another process may
        have narrowed a parent folder's permissions since the start (pytest does so to its temp root).
        """
        import signal
        import time

        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
