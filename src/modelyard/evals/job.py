"""The ``eval`` job: run a submitted suite and finish its stored run record.

``payload``: ``{"run_id", "suite": <suite as JSON>, "tenant": str | None, "url": the server's own
base URL}``. The run row already exists (``running``, written by ``POST /admin/evals`` after the suite
validated); this handler runs the suite against ``url`` with the submitter's key, so every request is
admitted, limited and metered as the submitter's, stores the document and returns
``{"run_id", "status"}``. A run that fails stores ``status: "error"`` with the message. ``ctx`` is
the job's :class:`~modelyard.evals.types.ProgressSink`.

The key is never in the payload (job records are stored): the route puts it in the process's
:class:`~modelyard.jobs.credentials.Credentials` under the run id and the handler takes it. A job run
by another process (``modelyard worker --jobs eval``) finds none there and uses that process's own
``MODELYARD_API_KEY``, if any. Registered in :func:`modelyard.jobs.catalog.known_kinds`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from modelyard.errors import ModelyardError
from modelyard.evals.execute import execute, open_stores
from modelyard.evals.suite import suite_from_dict
from modelyard.jobs.credentials import Credentials
from modelyard.settings import API_KEY_ENV

log = logging.getLogger("modelyard.evals")


async def run_eval_job(
    ctx: Any, payload: dict[str, Any], *, settings: Any = None, credentials: Credentials | None = None
) -> dict[str, Any]:
    if settings is None:
        settings = getattr(ctx, "settings", None)
    if settings is None:
        from modelyard.settings import load_settings

        settings = load_settings(None, {})
    run_id = str(payload["run_id"])
    api_key = credentials.take(run_id) if credentials is not None else None
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    with open_stores(settings) as stores:
        try:
            suite = suite_from_dict(payload["suite"])
            doc = await execute(
                suite,
                settings,
                ctx,
                base_dir=Path.cwd(),
                url=payload.get("url"),
                api_key=api_key,
                tenant=payload.get("tenant"),
                run_id=run_id,
                store=False,
                stores=stores,
            )
        except (ModelyardError, Exception) as exc:  # the record must leave `running` whatever happened
            message = getattr(exc, "message", None) or repr(exc)
            log.warning("eval run %s failed: %s", run_id, message)
            stores.runs.fail(run_id, message)
            return {"run_id": run_id, "status": "error", "error": message}
        stores.runs.finish(run_id, doc)
    return {"run_id": run_id, "status": doc["status"]}
