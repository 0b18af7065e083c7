"""Artifact locations and content digests.

An artifact is either a local file or folder (stored as its absolute path, digest computed from
its content) or a remote reference such as ``openai_compat://<deployment>`` (stored as given, no
digest required). A folder's digest is the SHA-256 of its files' relative paths and SHA-256s in
sorted order, so it does not depend on file-system order or timestamps.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelyard.errors import InvalidRequest
from modelyard.registry.records import DIGEST_RE, MAX_URI_CHARS, REMOTE_URI_RE

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of one file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file, or of a folder's files (see the module docstring)."""
    if path.is_file():
        return "sha256:" + file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file_sha256(file).encode() + b"\n")
    return "sha256:" + digest.hexdigest()


def local_path(artifact_uri: str) -> Path | None:
    """The local path an artifact URI names (a plain path or ``file://``), or None for a remote reference."""
    if artifact_uri.startswith("file://"):
        return Path(unquote(urlparse(artifact_uri).path))
    if REMOTE_URI_RE.match(artifact_uri):
        return None
    return Path(artifact_uri)


def normalize_artifact(artifact_uri: object, digest: object | None) -> tuple[str, str | None]:
    """Validate an artifact location and return ``(stored_uri, digest)``.

    A local artifact must exist; its digest is computed unless given. A given digest must be
    ``sha256:<64 lowercase hex>`` (a bare 64-hex string is accepted and prefixed).
    """
    if not isinstance(artifact_uri, str) or not artifact_uri.strip():
        raise InvalidRequest("artifact_uri must be a non-empty path or URI", param="artifact_uri")
    if len(artifact_uri) > MAX_URI_CHARS:
        raise InvalidRequest(f"artifact_uri is longer than {MAX_URI_CHARS} characters", param="artifact_uri")
    if digest is not None:
        if isinstance(digest, str) and len(digest) == 64 and DIGEST_RE.match("sha256:" + digest):
            digest = "sha256:" + digest
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise InvalidRequest(
                f"invalid digest {digest!r}: expected 'sha256:<64 hex digits>'", param="digest"
            )
    path = local_path(artifact_uri.strip())
    if path is None:
        return artifact_uri.strip(), digest
    path = path.expanduser().resolve()
    if not path.exists():
        raise InvalidRequest(f"artifact {str(path)!r} does not exist", param="artifact_uri")
    return str(path), digest if digest is not None else artifact_digest(path)
