"""Checks that a variant's targets exist, run when an experiment is created (unknown: 400 naming the
variant). A model is known when the router serves it or the registry has it (``name@alias`` and
``name:version`` must resolve in the registry); an adapter must be the tenant's (or a global one); a
prompt version must exist for the route's prompt as the experiment's tenant sees it."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidRequest, ModelyardError
from modelyard.experiments.records import Variant
from modelyard.experiments.store import TargetCheck


def target_check(registry: Any, router: Any, tenancy: Any, prompt_book: Any) -> TargetCheck:
    """A :data:`TargetCheck` on the given services (each may be None: that kind is then unknown).
    Blocking (database reads): run it in a thread."""
    served = set(router.models()) if router is not None else set()
    registered = {m.name for m in registry.list_models()} if registry is not None else set()

    def model_known(ref: str) -> bool:
        base = ref.split("@", 1)[0].split(":", 1)[0]
        if ref != base:
            try:
                registry.resolve(ref)
            except ModelyardError:
                return False
            return True
        return base in served or base in registered

    def check(v: Variant, route: str, kind: str, tenant: str | None) -> None:
        param = f"variants.{v.name}"
        if v.model is not None and not model_known(v.model):
            raise InvalidRequest(
                f"variant `{v.name}`: no model `{v.model}` is served or registered", param=param
            )
        if v.adapter is not None:
            adapters = tenancy.store.list_adapters(tenant) if tenancy is not None else []
            if not any(a.name == v.adapter for a in adapters):
                raise InvalidRequest(f"variant `{v.name}`: no adapter `{v.adapter}`", param=param)
        if kind == "model" and v.model is None and v.adapter is None and not model_known(route):
            raise InvalidRequest(
                f"variant `{v.name}` keeps the route's model, but no model `{route}` is served or registered",
                param=param,
            )
        if kind == "prompt":
            if prompt_book is None:
                raise InvalidRequest("the prompt registry is not configured", param="route")
            try:
                info = prompt_book.lookup(route, tenant, param="route")
                if v.prompt_version is not None:
                    info.select(v.prompt_version, param=param)
            except ModelyardError as exc:
                raise InvalidRequest(f"variant `{v.name}`: {exc.message}", param=exc.param or param) from None

    return check
