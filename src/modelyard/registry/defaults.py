"""``DefaultsBook``: each served model version's sampling defaults, cached in memory.

Requests never touch the database for defaults: the book holds a snapshot of the registry's models
(versions, aliases, defaults) and reloads it only when :meth:`Registry.revision` moves, polled every
``registry_poll_s`` like the resolver and the price book. A reference resolves in the snapshot as
the registry resolves it (:func:`~modelyard.registry.records.resolve_in`), so ``name:2`` gets version
2's defaults and ``name`` those of the version alias ``production`` points at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import anyio

from modelyard.errors import ModelNotFound
from modelyard.registry.records import ModelInfo, resolve_in
from modelyard.registry.sampling import NO_DEFAULTS, SamplingDefaults
from modelyard.registry.service import Registry

log = logging.getLogger("modelyard.registry")


class DefaultsBook:
    """Implements :class:`~modelyard.gateway.defaults.DefaultsSource` on a :class:`Registry`.

    ``fallback`` maps a served model name to its settings defaults (``local_models[].defaults``),
    which the registry's defaults (the artifact's, then an operator's) override field by field.
    """

    def __init__(self, registry: Registry, fallback: Mapping[str, Mapping[str, Any]]) -> None:
        self._registry = registry
        self._fallback = {name: SamplingDefaults.from_mapping(d) for name, d in fallback.items()}
        self._models: dict[str, ModelInfo] = {}
        self._memo: dict[tuple[str, str], SamplingDefaults] = {}
        self.revision = -1

    def for_model(self, ref: str, served: str) -> SamplingDefaults:
        """The defaults of the version ``ref`` names (served as ``served``); never raises."""
        key = (ref, served)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        try:
            registered = resolve_in(self._models, ref).defaults
        except ModelNotFound:  # a remote deployment that is not registered, or a name the book lacks
            registered = NO_DEFAULTS
        result = registered.over(self._fallback.get(served, NO_DEFAULTS))
        self._memo[key] = result
        return result

    def refresh(self) -> bool:
        """Reload the registry's models if it changed since the last call (blocking; True if it did)."""
        revision = self._registry.revision()
        if revision == self.revision:
            return False
        models = {m.name: m for m in self._registry.list_models()}
        self._models, self._memo, self.revision = models, {}, revision
        return True

    async def poll(self, interval_s: float) -> None:
        """Run :meth:`refresh` every ``interval_s`` until cancelled; database errors keep the old snapshot."""
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:
                log.warning(
                    "defaults refresh failed; keeping those of revision %s", self.revision, exc_info=True
                )
            await asyncio.sleep(interval_s)
