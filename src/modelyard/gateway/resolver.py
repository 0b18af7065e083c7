"""Model references resolved through the registry, cached until the registry's revision changes.

``name`` resolves to the name itself when this server routes it (the hot path: no database
call); ``name@alias`` and ``name:version`` go to the registry (off the event loop) and must land
on the version this server has loaded. A background task polls ``Registry.revision()`` and
drops the cache when it moves, so alias changes apply without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio

from modelyard.errors import ModelNotFound
from modelyard.gateway.router import Router

log = logging.getLogger("modelyard.gateway")


class RegistryResolver:
    """Implements :class:`~modelyard.gateway.pipeline.ModelResolver` on a ``Registry``."""

    def __init__(self, registry: Any, router: Router) -> None:
        self._registry = registry
        self._router = router
        self._cache: dict[str, str] = {}
        self._served: dict[str, str] = {}  # model name -> artifact_uri loaded by a local backend
        self.revision = -1

    def serving(self, name: str, artifact_uri: str) -> None:
        """Record that a local backend of ``name`` has loaded ``artifact_uri``."""
        self._served[name] = artifact_uri
        self._cache.clear()

    async def resolve(self, ref: str) -> str:
        hit = self._cache.get(ref)
        if hit is not None:
            return hit
        if "@" not in ref and ":" not in ref:
            if self._router.has_model(ref):
                return ref
            raise ModelNotFound(f"The model `{ref}` does not exist", param="model")
        resolved = await anyio.to_thread.run_sync(self._registry.resolve, ref)
        if not self._router.has_model(resolved.name):
            raise ModelNotFound(
                f"`{ref}` is registered (version {resolved.version}) but not deployed on this server",
                param="model",
            )
        loaded = self._served.get(resolved.name)
        if loaded is not None and loaded != resolved.artifact_uri:
            raise ModelNotFound(
                f"`{ref}` is version {resolved.version} ({resolved.artifact_uri}), which this server has not "
                f"loaded; it serves {loaded}",
                param="model",
            )
        self._cache[ref] = resolved.name
        return resolved.name

    async def refresh(self) -> bool:
        """Drop cached resolutions if the registry changed; True when it did."""
        revision = await anyio.to_thread.run_sync(self._registry.revision)
        if revision == self.revision:
            return False
        self.revision = revision
        self._cache.clear()
        return True

    async def poll(self, interval_s: float) -> None:
        """Run :meth:`refresh` every ``interval_s`` until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a database hiccup must not stop serving
                log.warning("registry poll failed", exc_info=True)
            await asyncio.sleep(interval_s)
