"""Versioned datasets: JSONL items in, immutable content-addressed versions out.

One line of JSONL is one item::

    {"id": "fr", "input": {"country": "France"}, "expected": "Paris"}          # prompt variables
    {"id": "q1", "input": [{"role": "user", "content": "2 + 2?"}], "expected": "4",
     "context": "...", "metadata": {"topic": "math"}}                          # chat messages

``id`` is a non-empty string, unique in the file; ``input`` is a non-empty list of ``{role, content}``
messages or a mapping of variables; ``expected``, ``context`` and ``metadata`` (a mapping) are
optional; nothing else is allowed. Each bad line is a :class:`DatasetError` naming its line number and
field (``line 3: input[0].role``). Limits: :data:`MAX_ITEMS` items, :data:`MAX_LINE_BYTES` per line.

A version is identified by its digest: the SHA-256 of the canonical file (each item as sorted-key
compact JSON on one line, in input order), which is also what is stored, at
``<data_dir>/artifacts/datasets/<hex>.jsonl``. The file is written to a temporary name and renamed,
and the row is inserted in one transaction after it, so an error leaves nothing half-written (at most
an unreferenced, complete artifact). Creating a version whose digest equals the latest version's
returns that version instead of adding one. Names are ``NAME`` (latest) or ``NAME@VERSION``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from modelyard.errors import InvalidRequest, NotFound
from modelyard.evals.types import EvalItem
from modelyard.registry.dataset_tables import DatasetVersionRow

MAX_ITEMS = 100_000
MAX_LINE_BYTES = 1 << 20
MAX_ID_CHARS = 256
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
ITEM_FIELDS = frozenset({"id", "input", "expected", "context", "metadata"})


class DatasetError(InvalidRequest):
    """A dataset file or reference that is not valid (400, naming the line and field)."""


class DatasetNotFound(NotFound):
    """No such dataset or version (404)."""


@dataclass(slots=True, frozen=True)
class DatasetInfo:
    name: str
    version: int
    digest: str
    item_count: int
    tenant: str | None
    created_by: str
    created_at: datetime
    source: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "item_count": self.item_count,
            "tenant": self.tenant,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "source": self.source,
        }


def parse_item(raw: Any, where: str) -> EvalItem:
    """Validate one decoded item; errors name ``where`` (``line 3``) and the field."""
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: an item is a JSON object", param=where)
    unknown = sorted(set(raw) - ITEM_FIELDS)
    if unknown:
        raise DatasetError(f"{where}: unknown field `{unknown[0]}`", param=f"{where}: {unknown[0]}")
    item_id = raw.get("id")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id or len(item_id) > MAX_ID_CHARS:
        raise DatasetError(
            f"{where}: `id` is a non-empty string of at most {MAX_ID_CHARS}", param=f"{where}: id"
        )
    value = raw.get("input")
    if isinstance(value, list):
        if not value:
            raise DatasetError(f"{where}: `input` is an empty message list", param=f"{where}: input")
        for i, m in enumerate(value):
            at = f"{where}: input[{i}]"
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise DatasetError(f"{at}.role must be one of {', '.join(sorted(ROLES))}", param=f"{at}.role")
            if not isinstance(m.get("content"), str | list):
                raise DatasetError(f"{at}.content must be a string or a list of parts", param=f"{at}.content")
    elif isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str) or not k.isidentifier()]
        if bad:
            raise DatasetError(
                f"{where}: input variable `{bad[0]}` is not an identifier", param=f"{where}: input"
            )
    else:
        raise DatasetError(
            f"{where}: `input` is a list of messages or a mapping of prompt variables",
            param=f"{where}: input",
        )
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise DatasetError(f"{where}: `metadata` is a mapping", param=f"{where}: metadata")
    return EvalItem(item_id, value, raw.get("expected"), raw.get("context"), metadata)


def parse_jsonl(
    data: bytes, *, max_items: int = MAX_ITEMS, max_line_bytes: int = MAX_LINE_BYTES
) -> list[EvalItem]:
    """Every item of a JSONL document (blank lines skipped); ids must be unique."""
    items: list[EvalItem] = []
    seen: set[str] = set()
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        if len(line) > max_line_bytes:
            raise DatasetError(f"{where}: longer than {max_line_bytes} bytes", param=where)
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON: {exc}", param=where) from None
        item = parse_item(raw, where)
        if item.id in seen:
            raise DatasetError(f"{where}: duplicate id `{item.id}`", param=f"{where}: id")
        seen.add(item.id)
        items.append(item)
        if len(items) > max_items:
            raise DatasetError(f"more than {max_items} items", param=where)
    if not items:
        raise DatasetError("the dataset has no items", param="line 1")
    return items


def load_jsonl(path: str | Path, **limits: int) -> list[EvalItem]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {p}: {exc.strerror}", param="dataset") from None
    return parse_jsonl(data, **limits)


def item_dict(item: EvalItem) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id, "input": item.input}
    if item.expected is not None:
        out["expected"] = item.expected
    if item.context is not None:
        out["context"] = item.context
    if item.metadata:
        out["metadata"] = item.metadata
    return out


def canonical(items: list[EvalItem]) -> bytes:
    """The stored bytes of a version: one sorted-key compact JSON object per line."""
    return b"".join(orjson.dumps(item_dict(i), option=orjson.OPT_SORT_KEYS) + b"\n" for i in items)


def digest_of(items: list[EvalItem]) -> str:
    return "sha256:" + hashlib.sha256(canonical(items)).hexdigest()


def split_of(item_id: str, test_fraction: float) -> str:
    """``test`` or ``train`` for an item id: the first 8 bytes of SHA-256(id) against the fraction."""
    h = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") / 2**64
    return "test" if h < test_fraction else "train"


def parse_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition("@")
    if not NAME_RE.match(name):
        raise DatasetError(f"invalid dataset name {name!r}", param="dataset")
    if not version:
        return name, None
    if not version.isdigit():
        raise DatasetError(f"dataset version {version!r} is not a number", param="dataset")
    return name, int(version)


class DatasetStore:
    """Dataset versions in the metadata store, items under ``<data_dir>/artifacts/datasets``.

    ``tenant`` on reads: None sees everything (system admin), a tenant sees global datasets and its own.
    """

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(write=True), expire_on_commit=False)
        self.root = data_dir.expanduser() / "artifacts" / "datasets"

    def path_of(self, digest: str) -> Path:
        return self.root / f"{digest.removeprefix('sha256:')}.jsonl"

    def create(
        self, name: str, items: list[EvalItem], *, source: str, created_by: str, tenant: str | None = None
    ) -> DatasetInfo:
        if not NAME_RE.match(name):
            raise DatasetError(f"invalid dataset name {name!r}: letters, digits, . _ -", param="name")
        data = canonical(items)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._write_artifact(digest, data)
        with self._write.begin() as session:
            rows = session.scalars(
                sa.select(DatasetVersionRow)
                .where(DatasetVersionRow.name == name)
                .order_by(DatasetVersionRow.version)
            ).all()
            if rows and rows[-1].tenant != tenant:
                raise DatasetError(f"dataset {name!r} belongs to another owner", param="name")
            if rows and rows[-1].digest == digest:
                return _info(rows[-1])
            row = DatasetVersionRow(
                name=name,
                version=(rows[-1].version + 1) if rows else 1,
                digest=digest,
                item_count=len(items),
                tenant=tenant,
                created_by=created_by,
                created_at=datetime.now(UTC),
                source=source,
            )
            session.add(row)
            session.flush()
            return _info(row)

    def _write_artifact(self, digest: str, data: bytes) -> None:
        path = self.path_of(digest)
        if path.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".jsonl")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, ref: str, *, tenant: str | None = None) -> DatasetInfo:
        name, version = parse_ref(ref)
        with self._read() as session:
            q = sa.select(DatasetVersionRow).where(DatasetVersionRow.name == name)
            if version is not None:
                q = q.where(DatasetVersionRow.version == version)
            row = session.scalars(q.order_by(DatasetVersionRow.version.desc()).limit(1)).first()
        if row is None or (tenant is not None and row.tenant not in (None, tenant)):
            raise DatasetNotFound(f"dataset {ref!r} does not exist", param="dataset")
        return _info(row)

    def versions(self, name: str | None = None, *, tenant: str | None = None) -> list[DatasetInfo]:
        with self._read() as session:
            q = sa.select(DatasetVersionRow)
            if name is not None:
                q = q.where(DatasetVersionRow.name == name)
            rows = session.scalars(q.order_by(DatasetVersionRow.name, DatasetVersionRow.version)).all()
        return [_info(r) for r in rows if tenant is None or r.tenant in (None, tenant)]

    def items(self, info: DatasetInfo) -> list[EvalItem]:
        """The version's items, verified against its digest."""
        path = self.path_of(info.digest)
        try:
            data = path.read_bytes()
        except OSError:
            raise DatasetNotFound(f"the items of {info.ref} are missing ({path})", param="dataset") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != info.digest:
            raise DatasetError(f"the items of {info.ref} do not match digest {info.digest}", param="dataset")
        return parse_jsonl(data)

    def split(
        self, ref: str, test_fraction: float, *, created_by: str, tenant: str | None = None
    ) -> tuple[DatasetInfo, DatasetInfo]:
        """Versions of ``NAME-train`` and ``NAME-test`` (by :func:`split_of` on each item id)."""
        if not 0.0 < test_fraction < 1.0:
            raise DatasetError("--test is a fraction between 0 and 1", param="test")
        info = self.get(ref, tenant=tenant)
        items = self.items(info)
        parts: dict[str, list[EvalItem]] = {"train": [], "test": []}
        for item in items:
            parts[split_of(item.id, test_fraction)].append(item)
        for part, chosen in parts.items():
            if not chosen:
                raise DatasetError(f"the {part} split of {info.ref} would be empty", param="test")
        source = f"split of {info.ref} (test={test_fraction})"
        train = self.create(
            f"{info.name}-train", parts["train"], source=source, created_by=created_by, tenant=info.tenant
        )
        test = self.create(
            f"{info.name}-test", parts["test"], source=source, created_by=created_by, tenant=info.tenant
        )
        return train, test


def _info(row: DatasetVersionRow) -> DatasetInfo:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return DatasetInfo(
        row.name, row.version, row.digest, row.item_count, row.tenant, row.created_by, created, row.source
    )


def sample(items: list[EvalItem], n: int | None, seed: int) -> list[EvalItem]:
    """``n`` items drawn without replacement by ``random.Random(seed)`` (all if ``n`` is None or larger)."""
    if n is None or n >= len(items):
        return items
    return random.Random(seed).sample(items, n)
