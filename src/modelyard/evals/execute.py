"""One eval run end to end: validate, connect, pre-flight, run, store, track.

:func:`execute` is what ``modelyard eval run`` and the ``eval`` job both call. Order matters for the
exit-code contract: everything that can be checked without a server (suite, dataset, scorers,
templates, gate, baseline) is checked first, then the targets' servers are asked whether their models
exist; only then is the first evaluation request sent. Until then nothing is stored.
``SuiteError`` (exit 2) and :class:`~modelyard.evals.runner.RunFailed` (exit 2) propagate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import openai

from modelyard.evals.connect import Clients, at_url, in_process
from modelyard.evals.judge import PromptSource, RegistryPrompts, build_judge
from modelyard.evals.prepare import PreparedSuite, prepare, scorer_factory
from modelyard.evals.runner import preflight, run_prepared
from modelyard.evals.store import RunStore
from modelyard.evals.suite import Suite, SuiteError
from modelyard.evals.tracking_hook import track_run
from modelyard.evals.types import ProgressSink, new_run_id
from modelyard.registry.datasets import DatasetStore

log = logging.getLogger("modelyard.evals")


@dataclass(slots=True)
class Stores:
    datasets: DatasetStore
    runs: RunStore
    price: Any = None  # (model, prompt_tokens, completion_tokens) -> cost, from the registry's prices
    prompts: Any = None  # the prompt registry (judge rubrics); None: the packaged rubrics only


@contextmanager
def open_stores(settings: Any) -> Iterator[Stores]:
    """The metadata store of ``settings`` (migrated), with a price function from the registry."""
    from modelyard.registry.prices import PriceBook
    from modelyard.registry.service import Registry
    from modelyard.store.db import create_db_engine, migrate

    engine = create_db_engine(settings.resolved_database_url)
    try:
        migrate(engine)
        registry = Registry(settings.resolved_database_url, engine=engine)
        book = PriceBook(registry, settings.tenancy.prices)
        book.refresh()

        def price(model: str, pt: int, ct: int) -> float | None:
            name = model.split("@", 1)[0].split(":", 1)[0]
            return book.cost(name, pt, ct) if book.price(name) is not None else None

        from modelyard.registry.prompts import PromptRegistry

        yield Stores(
            DatasetStore(engine, settings.resolved_data_dir), RunStore(engine), price, PromptRegistry(engine)
        )
    finally:
        engine.dispose()


class _DefaultClient:
    """Filled once connected; the judge's default client (the run's own)."""

    client: openai.AsyncOpenAI | None = None

    def __call__(self) -> openai.AsyncOpenAI:
        if self.client is None:
            raise RuntimeError("the judge was called before the run connected")
        return self.client


def prepare_suite(
    suite: Suite, stores: Stores, *, base_dir: Path, tenant: str | None, prompts: PromptSource | None = None
) -> tuple[PreparedSuite, _DefaultClient]:
    from modelyard.evals.scorers import default_registry

    default = _DefaultClient()
    if prompts is None and stores.prompts is not None:
        prompts = RegistryPrompts(stores.prompts, tenant)
    registry = default_registry()
    registry.register_scorer("judge", partial(build_judge, default_client=default, prompts=prompts))
    prepared = prepare(
        suite,
        base_dir=base_dir,
        build_scorer=scorer_factory(registry),
        datasets=stores.datasets,
        load_run=lambda rid: stores.runs.get(rid, tenant=tenant),
        tenant=tenant,
    )
    return prepared, default


async def execute(
    suite: Suite,
    settings: Any,
    progress: ProgressSink,
    *,
    base_dir: Path,
    url: str | None = None,
    api_key: str | None = None,
    tenant: str | None = None,
    run_id: str | None = None,
    store: bool = True,
    prompts: PromptSource | None = None,
    stores: Stores | None = None,
    tracker: Any = None,
) -> dict[str, Any]:
    """Run ``suite`` and return its document (stored unless ``store`` is false); see the module doc.

    With ``url`` the targets are reached there; without, in a modelyard app started in this process
    from ``settings``. A target's own ``base_url`` always wins. ``tracker`` (a ``modelyard.tracking``
    Tracker) also records the run in MLflow.
    """
    async with AsyncExitStack() as stack:
        if stores is None:
            stores = stack.enter_context(open_stores(settings))
        prepared, judge_client = prepare_suite(
            suite, stores, base_dir=base_dir, tenant=tenant, prompts=prompts
        )
        timeout = prepared.suite.timeout
        needs_default = any(t.spec.base_url is None for t in prepared.targets)
        default: openai.AsyncOpenAI | None = None
        if url is not None:
            default = at_url(url, api_key, timeout_s=timeout)
            stack.push_async_callback(default.close)
        elif needs_default:
            default = await stack.enter_async_context(
                in_process(settings, api_key=api_key, timeout_s=timeout)
            )
        clients = Clients(default)
        clients.add_targets(prepared.targets, timeout)
        stack.push_async_callback(clients.close)
        judge_client.client = default or clients.of(prepared.targets[0])
        await preflight(prepared, clients)
        doc = await run_prepared(
            prepared, clients, progress, price=stores.price, run_id=run_id or new_run_id()
        )
        if store:
            stores.runs.add(doc, tenant=tenant)
        if tracker is None:
            from modelyard.tracking import tracker_for

            tracker = tracker_for(settings)
        try:
            await anyio.to_thread.run_sync(track_run, doc, tracker)
        except Exception:  # the run is stored already; a tracking server that fails must not undo it
            log.warning("tracking eval run %s failed", doc["run_id"], exc_info=True)
        return doc
    raise SuiteError("unreachable", param="suite")  # pragma: no cover  (mypy: the stack never swallows)
