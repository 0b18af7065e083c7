"""API key material: generation, the visible prefix, and the HMAC-SHA-256 digest that is stored.

A key reads ``my-<prefix>-<secret>``: ``prefix`` (8 hex characters) identifies the key in lists
and logs; ``secret`` is 32 random bytes (base64url). Only ``hmac_sha256(server_secret, key)`` is
stored, so a leaked database does not yield usable keys without the server secret. The full key is
returned once, at creation, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import ConfigError

KEY_MARK = "my-"
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly minted key: ``plaintext`` is shown once; ``key_hash`` and ``prefix`` are stored."""

    plaintext: str
    prefix: str
    key_hash: str


def looks_like_key(token: str) -> bool:
    """True if ``token`` has the shape of a modelyard key (so it must verify, never be ignored)."""
    return token.startswith(KEY_MARK) and token.count("-") >= 2


def key_digest(server_secret: bytes, token: str) -> str:
    """The stored form of ``token``: hex HMAC-SHA-256 under the server secret."""
    return hmac.new(server_secret, token.encode(), hashlib.sha256).hexdigest()


def mint_key(server_secret: bytes) -> NewKey:
    prefix = secrets.token_hex(4)
    plaintext = f"{KEY_MARK}{prefix}-{secrets.token_urlsafe(32)}"
    return NewKey(plaintext, prefix, key_digest(server_secret, plaintext))


def load_server_secret(configured: str | None, data_dir: Path) -> bytes:
    """The HMAC secret: the configured one, else ``<data_dir>/tenancy.secret`` (created 0600 once).

    Every gateway process and the CLI must see the same secret; with several hosts, set
    ``tenancy.secret`` (``MODELYARD_TENANCY__SECRET``) explicitly.
    """
    if configured is not None:
        raw = configured.encode()
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"tenancy.secret is {len(raw)} bytes; use at least {MIN_SECRET_BYTES} random bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return raw
    path = data_dir / "tenancy.secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".tenancy.secret.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # atomic: exactly one process's secret wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text().strip().encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes; delete it or fix it")
    return secret
