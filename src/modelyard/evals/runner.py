"""The evaluation runner: every (target, item, repeat) sent once, scored, summarised into a run document.

Contract of :func:`run_prepared`:

- Requests go through each target's ``openai.AsyncOpenAI`` client (:class:`~modelyard.evals.connect.Clients`),
  at most ``suite.concurrency`` at a time (a pool of that many workers), each with the suite's
  ``timeout`` and ``retries`` (the client's own retry: exponential backoff with jitter on 408/409/429/5xx
  and connection errors, honouring ``Retry-After``).
- Repeat ``r`` sends ``seed = suite.seed + r`` (a target's ``parameters.seed`` replaces ``suite.seed``),
  so a rerun with the same seed asks the same questions with the same sampling.
- Parameters: the prompt file's defaults, overlaid by the target's ``parameters``. A registry prompt
  target sends ``{"prompt": {"id", "version", "variables"}}`` in the body (the gateway renders it); a
  prompt file is rendered here with :mod:`modelyard.registry.prompt_spec`. Item messages follow the
  rendered prompt.
- A request that still fails after its retries is a result with ``error`` set (score 0, not passed);
  a scorer that raises, or a cancelled progress sink, fails the whole run (:class:`RunFailed`).
- The document (``modelyard.evals.types``) lists results in (target, item, repeat) order, so two runs
  of the same suite are comparable line by line; ``summary`` and ``gate`` come from
  :mod:`modelyard.evals.summary` and :mod:`modelyard.evals.gate`.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai

from modelyard.evals.connect import Clients
from modelyard.evals.prepare import PreparedSuite, Target
from modelyard.evals.records import result_record, score_output
from modelyard.evals.suite import SuiteError
from modelyard.evals.types import (
    RUN_DOCUMENT_VERSION,
    EvalItem,
    ProgressSink,
    Score,
    TargetOutput,
    new_run_id,
)
from modelyard.registry.prompt_spec import render

PriceFn = Callable[[str, int, int], float | None]
# The chat/completions keyword arguments of the openai client; anything else goes in extra_body.
CLIENT_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "seed",
        "n",
        "response_format",
        "logprobs",
        "top_logprobs",
    }
)


class RunFailed(Exception):
    """The run itself failed (exit code 2): a broken scorer, an unreachable server, a cancel."""


def git_commit(cwd: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``cwd``, or None outside a git checkout (or without git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


async def preflight(prepared: PreparedSuite, clients: Clients) -> None:
    """Ask each target's server whether its model exists (``GET /v1/models/{model}``); 404 is a
    :class:`SuiteError` naming ``targets[i].model``. Sends no evaluation request."""
    for t in prepared.targets:
        if t.model is None:
            continue
        client = clients.of(t).with_options(max_retries=prepared.suite.retries)
        try:
            await client.models.retrieve(t.model)
        except openai.NotFoundError:
            listed = {m.id async for m in client.models.list()}
            if t.model not in listed:
                raise SuiteError(
                    f"targets[{t.index}].model: {t.model!r} does not exist on the target server",
                    param=f"targets[{t.index}].model",
                ) from None
        except openai.APIError as exc:
            raise RunFailed(f"targets[{t.index}]: the server did not answer: {exc}") from None


def _request(prepared: PreparedSuite, t: Target, item: EvalItem, repeat: int) -> tuple[str, dict[str, Any]]:
    """("chat" | "text", keyword arguments of the client call)."""
    params: dict[str, Any] = dict(t.prompt_spec.parameters) if t.prompt_spec else {}
    params.update(t.spec.parameters)
    params["seed"] = int(params.get("seed", prepared.suite.seed)) + repeat
    kwargs: dict[str, Any] = {k: v for k, v in params.items() if k in CLIENT_PARAMS}
    extra: dict[str, Any] = {k: v for k, v in params.items() if k not in CLIENT_PARAMS}
    if t.model is not None:
        kwargs["model"] = t.model
    messages: list[dict[str, Any]] = list(item.input) if isinstance(item.input, list) else []
    variables = item.input if isinstance(item.input, dict) else {}
    kind = "chat"
    if t.prompt_spec is not None:
        if t.prompt_spec.response_format and "response_format" not in kwargs:
            kwargs["response_format"] = t.prompt_spec.response_format
        rendered = render(t.prompt_spec, variables)
        if isinstance(rendered, str):
            kind, kwargs["prompt"] = "text", rendered
        else:
            messages = [*rendered, *messages]
    elif t.spec.prompt is not None:
        name, sep, version = t.spec.prompt.replace(":", "@", 1).partition("@")
        extra["prompt"] = {"id": name, "variables": variables, **({"version": version} if sep else {})}
        kwargs.setdefault("model", openai.omit)
    if kind == "chat":
        kwargs["messages"] = messages
    if extra:
        kwargs["extra_body"] = extra
    return kind, kwargs


async def _call(
    client: openai.AsyncOpenAI, kind: str, kwargs: dict[str, Any], price: PriceFn | None
) -> tuple[TargetOutput, str | None]:
    t0 = time.perf_counter()
    try:
        if kind == "chat":
            resp: Any = await client.chat.completions.create(**kwargs)
            text = resp.choices[0].message.content or "" if resp.choices else ""
        else:
            resp = await client.completions.create(**kwargs)
            text = resp.choices[0].text if resp.choices else ""
    except openai.APIError as exc:
        status = getattr(exc, "status_code", None)
        msg = f"{status}: {exc.message}" if status else f"{type(exc).__name__}: {exc.message}"
        return TargetOutput("", time.perf_counter() - t0, error=msg), None
    latency = time.perf_counter() - t0
    usage = resp.usage
    pt, ct = (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (0, 0)
    cost = price(resp.model, pt, ct) if price is not None and resp.model else None
    finish = resp.choices[0].finish_reason if resp.choices else None
    return TargetOutput(text, latency, pt, ct, cost, finish, None, resp.model_dump()), resp.model


async def _score(prepared: PreparedSuite, item: EvalItem, out: TargetOutput) -> dict[str, Score] | None:
    if out.error is not None:
        return None
    try:
        return await score_output(prepared.scorers, item, out)
    except Exception as exc:
        raise RunFailed(f"a scorer failed on item {item.id!r}: {exc!r}") from exc


async def run_prepared(
    prepared: PreparedSuite,
    clients: Clients,
    progress: ProgressSink,
    *,
    price: PriceFn | None = None,
    run_id: str | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run every request and return the run document (``status`` from the gate; see the module doc)."""
    suite = prepared.suite
    jobs = [
        (ti, ii, r)
        for ti in range(len(prepared.targets))
        for ii in range(len(prepared.items))
        for r in range(suite.repeats)
    ]
    results: dict[tuple[int, int, int], dict[str, Any]] = {}
    progress.start(
        len(jobs),
        f"{suite.name}: {len(prepared.targets)} target(s) x {len(prepared.items)} items x {suite.repeats}",
    )
    queue = iter(jobs)
    client_of = {
        t.index: clients.of(t).with_options(timeout=suite.timeout, max_retries=suite.retries)
        for t in prepared.targets
    }

    async def worker() -> None:
        for ti, ii, r in queue:
            if progress.cancelled:
                raise RunFailed("cancelled")
            t, item = prepared.targets[ti], prepared.items[ii]
            kind, kwargs = _request(prepared, t, item, r)
            out, resolved = await _call(client_of[t.index], kind, kwargs, price)
            if resolved and t.resolved is None:
                t.resolved = resolved
            scores = await _score(prepared, item, out)
            results[(ti, ii, r)] = result_record(item.id, t.name, r, out, prepared.scorers, scores)
            progress.advance()

    workers = [asyncio.create_task(worker()) for _ in range(min(suite.concurrency, len(jobs)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return build_document(prepared, [results[k] for k in jobs], run_id or new_run_id(), cwd)


def build_document(
    prepared: PreparedSuite, results: list[dict[str, Any]], run_id: str, cwd: Path | None
) -> dict[str, Any]:
    from modelyard.evals.gate import evaluate_gate, run_status
    from modelyard.evals.summary import summarize

    suite = prepared.suite
    targets = [t.describe() for t in prepared.targets]
    doc: dict[str, Any] = {
        "version": RUN_DOCUMENT_VERSION,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(),
        "git_commit": git_commit(cwd),
        "suite": {"name": suite.name, "digest": prepared.suite_digest},
        "dataset": {k: prepared.dataset.get(k) for k in ("name", "version", "digest")},
        "targets": targets,
        "scorers": [
            {"name": s.name, "type": spec.get("type"), "threshold": s.threshold, "weight": s.weight}
            for s, spec in zip(prepared.scorers, prepared.scorer_specs, strict=True)
        ],
        "repeats": suite.repeats,
        "seed": suite.seed,
        "results": results,
    }
    doc["summary"] = summarize(results, targets, doc["scorers"])
    gate = prepared.gate
    doc["gate"] = evaluate_gate(doc, gate, prepared.baseline) if gate is not None else None
    doc["status"] = run_status(doc["gate"], run_failed=False)
    return doc
