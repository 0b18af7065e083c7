"""``PriceBook``: per-model prices from the registry, cached in memory, with a settings fallback.

Cost lookups happen on every request and never touch the database: the book holds the registry's
prices and reloads them only when :meth:`Registry.revision` moves (the same counter and the same
``registry_poll_s`` interval the gateway's resolver uses to pick up alias changes without a
restart). A model without registry prices falls back to the ``tenancy.prices`` setting; a model in
neither costs 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import anyio

from modelyard.registry.records import Prices
from modelyard.registry.service import Registry

log = logging.getLogger("modelyard.registry")


def settings_prices(prices: Mapping[str, Mapping[str, float]]) -> dict[str, Prices]:
    """The ``tenancy.prices`` setting as :class:`Prices` (a missing half is 0)."""
    return {
        model: Prices(float(p.get("prompt_per_1k", 0.0)), float(p.get("completion_per_1k", 0.0)))
        for model, p in prices.items()
    }


class PriceBook:
    def __init__(self, registry: Registry, fallback: Mapping[str, Mapping[str, float]]) -> None:
        self._registry = registry
        self._fallback = settings_prices(fallback)
        self._prices: dict[str, Prices] = {}
        self.revision = -1

    def price(self, model: str) -> Prices | None:
        """The registry's prices of ``model``, else the settings', else None (free)."""
        return self._prices.get(model) or self._fallback.get(model)

    def cost(self, model: str, prompt_tokens: float, completion_tokens: float) -> float:
        price = self.price(model)
        return price.cost(prompt_tokens, completion_tokens) if price is not None else 0.0

    def refresh(self) -> bool:
        """Reload the prices if the registry changed since the last call (blocking; True if it did)."""
        revision = self._registry.revision()
        if revision == self.revision:
            return False
        self._prices = self._registry.prices()
        self.revision = revision
        return True

    async def poll(self, interval_s: float) -> None:
        """Run :meth:`refresh` every ``interval_s`` until cancelled; database errors keep the old prices."""
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:
                log.warning(
                    "price refresh failed; keeping the prices of revision %s", self.revision, exc_info=True
                )
            await asyncio.sleep(interval_s)
