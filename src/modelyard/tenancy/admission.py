"""Admission: which limit rules a request must fit, and the worst-case token count it reserves.

Limits live on the tenant and on the key as ``{"rpm", "tpm", "concurrency", "models": {name: {...}}}``;
every limit that is set applies (tenant, key, and per-model under either). Token counts are reserved
at their worst case and settled later: the prompt's upper bound is its UTF-8 byte count (a byte-level
BPE token is at least one byte) plus a per-message allowance for the chat template.
"""

from __future__ import annotations

from typing import Any

from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.tenancy.limits import Rule

TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_FIXED = 8
CONCURRENCY_TTL_S = 600


def prompt_upper_bound(parsed: Any) -> int:
    """At least as many tokens as the prompt can have after tokenisation and templating."""
    if isinstance(parsed, ChatCompletionRequest):
        n = TEMPLATE_TOKENS_FIXED
        for m in parsed.messages:
            n += len(m.text().encode()) + TEMPLATE_TOKENS_PER_MESSAGE
        return n
    raw: Any = parsed.prompt if isinstance(parsed, CompletionRequest) else parsed.input
    return TEMPLATE_TOKENS_FIXED + _size(raw)


def _size(raw: Any) -> int:
    if isinstance(raw, str):
        return len(raw.encode())
    if isinstance(raw, int):
        return 1
    if isinstance(raw, list):
        return sum(_size(x) for x in raw)
    return 0


def completion_upper_bound(parsed: Any, default_max_tokens: int) -> int:
    if isinstance(parsed, EmbeddingRequest):
        return 0
    if isinstance(parsed, ChatCompletionRequest):
        mt = parsed.effective_max_tokens()
    else:
        mt = parsed.max_tokens
    return (mt if mt is not None else default_max_tokens) * (parsed.n or 1)


def rate_rules(owner: str, limits: dict[str, Any], model: str, tokens: float) -> list[Rule]:
    """Rules for one owner (``tenant:<id>`` or ``key:<id>``): its own limits and its per-model ones."""
    rules: list[Rule] = []
    scopes = [("", limits)]
    per_model = (limits.get("models") or {}).get(model)
    if per_model:
        scopes.append((f":m:{model}", per_model))
    for suffix, lim in scopes:
        if lim.get("rpm"):
            rules.append(Rule(f"rl:{owner}{suffix}:rpm", "bucket", float(lim["rpm"]), 1.0))
        if lim.get("tpm"):
            rules.append(Rule(f"rl:{owner}{suffix}:tpm", "bucket", float(lim["tpm"]), tokens))
        if lim.get("concurrency"):
            rules.append(
                Rule(f"rl:{owner}{suffix}:conc", "counter", float(lim["concurrency"]), 1.0, CONCURRENCY_TTL_S)
            )
    return rules
