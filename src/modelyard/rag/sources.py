"""Reading corpus sources: text/Markdown files (one document each, id = path relative to the root) and
JSONL files (one ``{"id", "text", "metadata"?}`` object per line).

Everything is read and validated before anything is written, so a bad source (a file that is not
UTF-8, a JSONL line without ``id``, a duplicate id) raises :class:`~modelyard.errors.InvalidRequest`
naming the file and line, and the index is left as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}


@dataclass(slots=True, frozen=True)
class SourceDocument:
    id: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)


def parse_document(obj: Any, where: str) -> SourceDocument:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{where}: a document is an object with `id` and `text`", param="documents")
    doc_id, text, meta = obj.get("id"), obj.get("text"), obj.get("metadata") or {}
    if not isinstance(doc_id, str) or not 0 < len(doc_id) <= 256:
        raise InvalidRequest(f"{where}: `id` is a string of 1-256 characters", param="id")
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}: `text` is a string", param="text")
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise InvalidRequest(f"{where}: `metadata` maps strings to strings", param="metadata")
    return SourceDocument(doc_id, text, dict(meta))


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"{path} is not UTF-8 (byte {exc.start}: {exc.reason}); convert it (e.g. iconv -t utf-8) and "
            "ingest again; nothing was changed",
            param="path",
        ) from None


def _files(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """(file, root it is named relative to)."""
    out = []
    for p in paths:
        if p.is_dir():
            out += [
                (f, p) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix in TEXT_SUFFIXES | {".jsonl"}
            ]
        elif p.is_file():
            out.append((p, p.parent))
        else:
            raise InvalidRequest(f"{p} does not exist", param="path")
    return out


def read_sources(paths: Iterable[Path]) -> list[SourceDocument]:
    docs: list[SourceDocument] = []
    for path, root in _files(paths):
        text = _read_text(path)
        if path.suffix == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidRequest(f"{path}:{n}: not JSON ({exc.msg})", param="path") from None
                docs.append(parse_document(obj, f"{path}:{n}"))
        else:
            docs.append(
                SourceDocument(str(path.relative_to(root)), text, {"source": path.suffix.lstrip(".")})
            )
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise InvalidRequest(f"document id `{d.id}` appears twice in the sources", param="id")
        seen.add(d.id)
    return docs
