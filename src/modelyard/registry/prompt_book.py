"""``PromptBook``: the prompt registry cached in memory, for the prompt layer's per-request lookups.

Requests never touch the database for prompts: the book holds a snapshot of every prompt (versions,
labels) and reloads it only when :meth:`Registry.revision` moves, polled every ``registry_poll_s``
like the resolver, the price book and the defaults book, so a label moved by any process is seen
within one poll. Parsed specs are memoised per version (versions are immutable).
"""

from __future__ import annotations

import asyncio
import logging

import anyio

from modelyard.registry.prompt_records import PromptInfo, PromptNotFound, PromptVersionInfo
from modelyard.registry.prompt_spec import PromptSpec
from modelyard.registry.prompts import PromptRegistry
from modelyard.registry.service import Registry

log = logging.getLogger("modelyard.registry")


class PromptBook:
    def __init__(self, registry: Registry, prompts: PromptRegistry) -> None:
        self._registry = registry
        self.prompts = prompts
        self._by_owner: dict[tuple[str | None, str], PromptInfo] = {}
        self._specs: dict[tuple[str | None, str, int], PromptSpec] = {}
        self.revision = -1

    def lookup(self, name: str, viewer: str | None, param: str = "prompt.id") -> PromptInfo:
        """The prompt ``name`` as tenant ``viewer`` sees it (its own, else the global one); another
        tenant's prompt is :class:`PromptNotFound` in the same words as a missing one."""
        found = (self._by_owner.get((viewer, name)) if viewer is not None else None) or self._by_owner.get(
            (None, name)
        )
        if found is None:
            raise PromptNotFound(f"the prompt `{name}` does not exist", param=param)
        return found

    def spec(self, version: PromptVersionInfo) -> PromptSpec:
        key = (version.tenant, version.name, version.version)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = version.spec()
        return spec

    def refresh(self) -> bool:
        """Reload the prompts if the registry changed since the last call (blocking; True if it did)."""
        revision = self._registry.revision()
        if revision == self.revision:
            return False
        prompts = {(p.tenant, p.name): p for p in self.prompts.list_prompts()}
        self._by_owner, self.revision = prompts, revision
        return True

    async def poll(self, interval_s: float) -> None:
        """Run :meth:`refresh` every ``interval_s`` until cancelled; database errors keep the old snapshot."""
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:
                log.warning(
                    "prompt refresh failed; keeping those of revision %s", self.revision, exc_info=True
                )
            await asyncio.sleep(interval_s)
