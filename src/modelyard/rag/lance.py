"""The embedded default vector store: LanceDB, one table per namespace in a local folder.

Without an index LanceDB searches exhaustively (exact cosine top-k), which is what a few hundred
thousand chunks need on a CPU; an ANN index (IVF-PQ) is LanceDB's own and can be added per table
later without changing this seam. Reads are strongly consistent (``read_consistency_interval=0``):
a query always sees the latest committed write, from this process or another.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import Conflict
from modelyard.rag.vectors import (
    Hit,
    NamespaceNotFound,
    Record,
    check_namespace,
    check_where,
    dump_metadata,
    load_metadata,
    tags,
)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceStore:
    name = "lancedb"

    def __init__(self, path: Path) -> None:
        import lancedb

        path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(path), read_consistency_interval=timedelta(0))
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _schema(self, dimensions: int) -> Any:
        import pyarrow as pa

        return pa.schema(
            [
                pa.field("id", pa.string()),
                pa.field("doc_id", pa.string()),
                pa.field("text", pa.string()),
                pa.field("tags", pa.list_(pa.string())),
                pa.field("metadata", pa.string()),
                pa.field("vector", pa.list_(pa.float32(), dimensions)),
            ]
        )

    def _table(self, namespace: str) -> Any:
        check_namespace(namespace)
        with self._lock:
            table = self._tables.get(namespace)
            if table is None:
                try:
                    table = self._db.open_table(namespace)
                except ValueError:
                    raise NamespaceNotFound(f"no vector namespace `{namespace}`") from None
                self._tables[namespace] = table
            return table

    @staticmethod
    def _dimensions(table: Any) -> int:
        return int(table.schema.field("vector").type.list_size)

    def create_namespace(self, namespace: str, dimensions: int) -> None:
        check_namespace(namespace)
        try:
            existing = self._table(namespace)
        except NamespaceNotFound:
            with self._lock:
                try:
                    self._tables[namespace] = self._db.create_table(
                        namespace, schema=self._schema(dimensions)
                    )
                except ValueError:  # created by another process in between
                    self._tables[namespace] = self._db.open_table(namespace)
                existing = self._tables[namespace]
        if self._dimensions(existing) != dimensions:
            raise Conflict(
                f"namespace `{namespace}` holds {self._dimensions(existing)}-dimensional vectors, not {dimensions}"
            )

    def upsert(self, namespace: str, records: Sequence[Record]) -> None:
        if not records:
            return
        import pyarrow as pa

        table = self._table(namespace)
        dims = self._dimensions(table)
        vectors = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
        if vectors.shape[1] != dims:
            raise Conflict(
                f"namespace `{namespace}` holds {dims}-dimensional vectors, not {vectors.shape[1]}"
            )
        data = pa.Table.from_arrays(
            [
                pa.array([r.id for r in records], pa.string()),
                pa.array([r.doc_id for r in records], pa.string()),
                pa.array([r.text for r in records], pa.string()),
                pa.array([tags(r.metadata) for r in records], pa.list_(pa.string())),
                pa.array([dump_metadata(r.metadata) for r in records], pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dims),
            ],
            schema=self._schema(dims),
        )
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        table = self._table(namespace)
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            table.delete(f"id IN ({', '.join(_quote(i) for i in batch)})")

    def query(
        self, namespace: str, vector: np.ndarray, k: int, where: Mapping[str, str] | None = None
    ) -> list[Hit]:
        table = self._table(namespace)
        search = table.search(np.asarray(vector, dtype=np.float32)).distance_type("cosine")
        wanted = check_where(where)
        if wanted:
            search = search.where(
                f"array_has_all(tags, [{', '.join(_quote(t) for t in wanted)}])", prefilter=True
            )
        rows = search.select(["id", "doc_id", "text", "metadata", "_distance"]).limit(k).to_list()
        return [
            Hit(r["id"], r["doc_id"], r["text"], 1.0 - float(r["_distance"]), load_metadata(r["metadata"]))
            for r in rows
        ]

    def count(self, namespace: str) -> int:
        return int(self._table(namespace).count_rows())

    def drop(self, namespace: str) -> None:
        check_namespace(namespace)
        with self._lock:
            self._tables.pop(namespace, None)
            try:
                self._db.drop_table(namespace)
            except (ValueError, FileNotFoundError):
                pass

    def close(self) -> None:
        with self._lock:
            self._tables.clear()
