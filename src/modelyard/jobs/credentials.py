"""Secrets a job needs that are never stored with it.

A job record (payload, result, logs) lives in the metadata store; an API key must not. A feature that
submits a job on a caller's behalf (an eval run sends its requests with the submitter's key, so they
are admitted, limited and metered as the submitter's) puts the key here under a handle named in the
payload, and the handler takes it once. The vault is this process's memory only: a job run by another
process (``modelyard worker --jobs``) or after a restart finds nothing and falls back to that
process's own key (``MODELYARD_API_KEY``), which the handler documents.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_CREDENTIALS = 1024  # handles held at once; the oldest untaken one is dropped beyond it


class Credentials:
    """Handle -> secret, taken at most once, bounded to :data:`MAX_CREDENTIALS` entries."""

    def __init__(self, max_entries: int = MAX_CREDENTIALS) -> None:
        self._secrets: OrderedDict[str, str] = OrderedDict()
        self._max = max_entries

    def put(self, handle: str, secret: str) -> None:
        self._secrets[handle] = secret
        self._secrets.move_to_end(handle)
        while len(self._secrets) > self._max:
            self._secrets.popitem(last=False)

    def take(self, handle: str) -> str | None:
        return self._secrets.pop(handle, None)

    def __len__(self) -> int:
        return len(self._secrets)
