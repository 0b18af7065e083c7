"""Plain data that crosses the engine boundary: what a caller submits and what it gets back.

These are the only engine types the gateway sees. They are slotted dataclasses, cheap to build
and to send across threads or processes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Upper bounds (seconds) of the engine's queue-time histogram: vLLM's buckets for
# ``vllm:request_queue_time_seconds`` (see ``EngineStats.queue_time_counts``).
QUEUE_TIME_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                      120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


class FinishReason(enum.StrEnum):
    """Why a sequence stopped, spelled as the OpenAI API spells it (``abort`` is ours)."""

    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"


@dataclass(slots=True)
class SamplingParams:
    """Per-request decoding parameters.

    ``temperature == 0`` means greedy. ``seed`` makes sampling reproducible for this request
    whatever else shares the batch. ``logprobs`` is ``None`` for none, ``0`` for the chosen
    token's log-probability only, ``k`` for the chosen token plus the top ``k``.
    ``n`` choices share the prompt's KV blocks.
    """

    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    logprobs: int | None = None


@dataclass(slots=True)
class GenerateRequest:
    """One generation request.

    ``lora`` names a loaded adapter (``None`` for the base model). ``cache_salt`` separates
    prefix-cache entries: blocks are only shared between requests with the same salt and adapter
    (the gateway passes the tenant id). Lower ``priority`` values are scheduled first; ties are FCFS.
    """

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    lora: str | None = None
    cache_salt: str | None = None
    priority: int = 0


@dataclass(slots=True)
class TokenLogprob:
    """The log-probability of one generated token and, if asked, its top alternatives."""

    token_id: int
    token: str
    logprob: float
    top: list[tuple[int, str, float]] = field(default_factory=list)


@dataclass(slots=True)
class Usage:
    """Token counts of a whole request (all ``n`` choices); ``cached_tokens`` came from the prefix cache."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass(slots=True)
class RequestOutput:
    """An incremental output of one choice of a request.

    ``token_ids`` and ``text`` are the new tokens and text since the previous output of the same
    choice ``index``; ``text`` never ends inside a multi-byte character or a possible stop string.
    ``finish_reason`` is set on the last output of a choice. ``usage`` is set once, on the very last
    output of the request (after every choice finished).
    """

    request_id: str
    index: int
    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
