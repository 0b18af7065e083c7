"""The synchronous engine: ``step()`` = schedule -> execute -> update.

Not thread-safe: one thread drives it (``AsyncEngine`` runs it on its own thread).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modelyard.engine.config import EngineConfig
from modelyard.engine.detokenizer import IncrementalDetokenizer
from modelyard.engine.kv_cache import BlockManager
from modelyard.engine.model_runner import ModelRunner
from modelyard.engine.request import (
    QUEUE_TIME_BUCKETS,
    FinishReason,
    GenerateRequest,
    RequestOutput,
    TokenLogprob,
    Usage,
)
from modelyard.engine.sampler import make_generator
from modelyard.engine.scheduler import Scheduler
from modelyard.engine.sequence import Sequence
from modelyard.errors import AdapterNotFound, Conflict, ContextLengthExceeded, InvalidRequest

MAX_LOGPROBS = 20
log = logging.getLogger(__name__)


@dataclass(slots=True)
class EngineStats:
    """A snapshot of engine state and counters (vLLM metric meanings; token counts are totals)."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float
    num_kv_blocks: int
    prefix_cache_queries: int
    prefix_cache_hits: int
    prompt_tokens_total: int
    generation_tokens_total: int
    num_preemptions: int
    num_steps: int
    # Time from add_request to first being scheduled, as a histogram over QUEUE_TIME_BUCKETS:
    # per-bucket (not cumulative) counts, the last one for +Inf, and the sum in seconds.
    queue_time_counts: list[int] = field(default_factory=list)
    queue_time_sum: float = 0.0


@dataclass(slots=True)
class _Request:
    request: GenerateRequest
    seqs: list[Sequence]
    completion_tokens: int = 0
    open_choices: set[int] = field(default_factory=set)
    arrival: float = field(default_factory=time.monotonic)
    scheduled: bool = False


class LLMEngine:
    """Continuous-batching generation over one loaded model.

    ``add_request`` validates and queues; ``step`` runs one batch and returns the new outputs
    (one :class:`RequestOutput` per choice that produced a token or finished); ``abort`` frees a
    request's blocks at once and returns its closing outputs (reason ``abort``).
    """

    def __init__(self, loaded: Any, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        self.loaded = loaded
        self.model_config = loaded.config
        self.tokenizer = loaded.tokenizer
        self.chat_template = loaded.chat_template
        self.eos_token_ids = frozenset(loaded.eos_token_ids)
        self.device = config.resolved_device()
        self.dtype = loaded.model.dtype  # not a parameter's: a quantized model's first may be int8
        if config.num_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(config.num_threads)
        self.runner = ModelRunner(loaded.model, loaded.config, config, dtype=self.dtype, device=self.device)
        self.run_config = self._run_config(loaded.model)
        log.info(
            "engine %s: %s",
            loaded.config.architecture,
            " ".join(f"{k}={v}" for k, v in self.run_config.items()),
        )
        self.block_manager = BlockManager(
            self.runner.num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.max_model_len = min(
            config.max_model_len or loaded.config.max_position_embeddings,
            loaded.config.max_position_embeddings,
            self.runner.num_blocks * config.block_size,
        )
        self.scheduler = Scheduler(
            self.block_manager,
            max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens,
            max_loras=config.max_loras,
            long_prefill_token_threshold=config.long_prefill_token_threshold,
        )
        self._requests: dict[str, _Request] = {}
        self._seq_ids = itertools.count(1)
        self._arrivals = itertools.count()
        self._lora_ids: dict[str, int] = {}
        self._lora_counter = itertools.count(1)
        self._token_text: dict[int, str] = {}
        self._prompt_tokens = 0
        self._generation_tokens = 0
        self._preemptions = 0
        self._steps = 0
        self._queue_time_counts = [0] * (len(QUEUE_TIME_BUCKETS) + 1)
        self._queue_time_sum = 0.0

    def _run_config(self, model: Any) -> dict[str, Any]:
        """What this engine runs with, as chosen from the settings and the CPU (logged, and reported
        by ``bench.engine``): device, CPU capability, dtype, weight format, threads, KV cache."""
        from modelyard.engine.cpu import detect_cpu
        from modelyard.engine.quant import weight_bytes

        return {
            "device": str(self.device),
            "cpu": detect_cpu().as_dict() if self.device.type == "cpu" else None,
            "dtype": str(self.dtype).removeprefix("torch."),
            "quantization": weight_format(model),
            "settings": {"dtype": self.config.dtype, "quantization": self.config.quantization},
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "weight_bytes": weight_bytes(model),
            "kv_cache_bytes": self.runner.kv_cache_bytes,
            "num_kv_blocks": self.runner.num_blocks,
        }

    @classmethod
    def from_source(
        cls, source: str | Path, engine_config: EngineConfig | None = None, *, cache_dir: Path
    ) -> LLMEngine:
        """Load ``source`` (GGUF file, HF folder or packaged name) with the config's dtype and device."""
        from modelyard.engine.loader import load_model

        config = engine_config or EngineConfig()
        choice = config.auto_choice()
        loaded = load_model(
            source,
            cache_dir=cache_dir,
            dtype=choice.dtype,
            device=config.resolved_device(),
            quantization=choice.quantization,
            quantize_head=config.quantize_lm_head,
        )
        return cls(loaded, config)

    # ---- requests -----------------------------------------------------------------------------
    def check_request(self, req: GenerateRequest) -> None:
        """Raise the error ``add_request`` would raise for ``req`` (without queuing it)."""
        p = req.params
        n_prompt = len(req.prompt_token_ids)
        if n_prompt == 0:
            raise InvalidRequest("the prompt is empty", param="prompt")
        if n_prompt >= self.max_model_len:
            raise ContextLengthExceeded(
                f"the prompt has {n_prompt} tokens but this model's context is {self.max_model_len}; "
                "shorten the prompt",
                param="messages",
            )
        vocab = self.model_config.vocab_size
        if min(req.prompt_token_ids) < 0 or max(req.prompt_token_ids) >= vocab:
            raise InvalidRequest(f"prompt token ids must be in [0, {vocab})", param="prompt")
        checks = [
            (p.n >= 1, "n", "must be at least 1"),
            (p.max_tokens >= 1, "max_tokens", "must be at least 1"),
            (p.temperature >= 0, "temperature", "must be >= 0"),
            (0 < p.top_p <= 1, "top_p", "must be in (0, 1]"),
            (p.top_k >= 0, "top_k", "must be >= 0 (0 = off)"),
            (0 <= p.min_p <= 1, "min_p", "must be in [0, 1]"),
            (-2 <= p.presence_penalty <= 2, "presence_penalty", "must be in [-2, 2]"),
            (-2 <= p.frequency_penalty <= 2, "frequency_penalty", "must be in [-2, 2]"),
            (p.repetition_penalty > 0, "repetition_penalty", "must be > 0"),
            (
                p.logprobs is None or 0 <= p.logprobs <= MAX_LOGPROBS,
                "logprobs",
                f"must be in [0, {MAX_LOGPROBS}]",
            ),
            (
                p.n <= self.config.max_num_seqs,
                "n",
                f"must be at most max_num_seqs={self.config.max_num_seqs}",
            ),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise InvalidRequest(f"{name}={getattr(p, name)!r} {msg}", param=name)
        if req.lora is not None and req.lora not in self._lora_ids:
            raise AdapterNotFound(f"adapter {req.lora!r} is not loaded", param="model")
        if req.request_id in self._requests:
            raise Conflict(f"request id {req.request_id!r} is already running", param="request_id")

    def add_request(self, req: GenerateRequest) -> None:
        """Validate and queue ``req`` (raises ``InvalidRequest`` / ``ContextLengthExceeded`` / ...)."""
        self.check_request(req)
        arrival = next(self._arrivals)
        lora_id = self._lora_ids.get(req.lora, 0) if req.lora else 0
        seqs = []
        for i in range(req.params.n):
            seq = Sequence(
                next(self._seq_ids),
                req.request_id,
                i,
                req.prompt_token_ids,
                req.params,
                lora=req.lora,
                lora_id=lora_id,
                cache_salt=req.cache_salt,
                priority=req.priority,
                arrival=arrival,
            )
            if req.params.seed is not None:
                seq.generator = make_generator(req.params.seed, i, self.device)
            seq.detok = IncrementalDetokenizer(
                self.tokenizer, req.prompt_token_ids, req.params, self.eos_token_ids, self.max_model_len
            )
            seqs.append(seq)
        seqs[0].pending_forks = seqs[1:]
        self._requests[req.request_id] = _Request(req, seqs, open_choices=set(range(req.params.n)))
        self._prompt_tokens += len(req.prompt_token_ids)
        self.scheduler.add(seqs[0])

    def abort(self, request_id: str) -> list[RequestOutput]:
        """Stop a request now and free its blocks; returns its closing outputs ([] if unknown)."""
        state = self._requests.get(request_id)
        if state is None:
            return []
        outputs = []
        for seq in state.seqs:
            if seq.index in state.open_choices:
                self.scheduler.finish(seq)
                seq.finish_reason = FinishReason.ABORT
                text = seq.detok.finish()
                outputs.append(RequestOutput(request_id, seq.index, [], text, None, FinishReason.ABORT))
                state.open_choices.discard(seq.index)
        if outputs:
            outputs[-1].usage = self._usage(state)
        del self._requests[request_id]
        return outputs

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def request_ids(self) -> list[str]:
        """Ids of the requests queued or running."""
        return list(self._requests)

    # ---- the step -----------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Schedule, execute and update one batch; the new outputs of every choice that advanced."""
        out = self.scheduler.schedule()
        self._preemptions += len(out.preempted)
        if not out.seqs:
            return []
        self._steps += 1
        self._observe_queue_times(out.seqs)
        result = self.runner.execute(out)
        self.scheduler.update(out)
        if result.sampled is None:
            return []
        outputs: list[RequestOutput] = []
        sampled = result.sampled
        for i, seq in enumerate(result.seqs):
            if seq.pending_forks:
                self.scheduler.fork(seq)
            tok = sampled.token_ids[i]
            seq.token_ids.append(tok)
            self._generation_tokens += 1
            text = seq.detok.add(tok)
            logprobs = None
            if seq.params.logprobs is not None:
                top = [(t, self._text_of(t), lp) for t, lp in (sampled.top_logprobs[i] or [])]
                logprobs = [TokenLogprob(tok, self._text_of(tok), sampled.logprobs[i] or 0.0, top)]
            state = self._requests[seq.request_id]
            state.completion_tokens += 1
            ro = RequestOutput(seq.request_id, seq.index, [tok], text, logprobs)
            if seq.detok.finish_reason is not None:
                seq.finish_reason = ro.finish_reason = seq.detok.finish_reason
                self.scheduler.finish(seq)
                state.open_choices.discard(seq.index)
                if not state.open_choices:
                    ro.usage = self._usage(state)
                    del self._requests[seq.request_id]
            outputs.append(ro)
        return outputs

    def _observe_queue_times(self, seqs: list[Any]) -> None:
        now = time.monotonic()
        for seq in seqs:
            state = self._requests.get(seq.request_id)
            if state is not None and not state.scheduled:
                state.scheduled = True
                waited = now - state.arrival
                self._queue_time_counts[bisect.bisect_left(QUEUE_TIME_BUCKETS, waited)] += 1
                self._queue_time_sum += waited

    def _usage(self, state: _Request) -> Usage:
        return Usage(
            len(state.request.prompt_token_ids), state.completion_tokens, state.seqs[0].num_cached_tokens or 0
        )

    def _text_of(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = self._token_text[token_id] = self.tokenizer.decode([token_id])
        return text

    # ---- adapters -----------------------------------------------------------------------------
    def load_lora(self, name: str, path: str | Path) -> None:
        """Load (or replace) adapter ``name`` from a PEFT folder; requests may then use it.

        Raises ``InvalidRequest`` for a bad folder and ``Conflict`` when replacing an adapter that
        requests are using.
        """
        from modelyard.engine.lora import LoRAManager

        if self.runner.lora_manager is None:
            self.runner.lora_manager = LoRAManager(
                self.loaded.model, max_loras=self.config.max_loras, max_rank=self.config.max_lora_rank
            )
        self._check_unused(name)
        # The adapter stacks become inference tensors when first filled inside a step, so every
        # manager call runs in inference mode too (in-place updates are refused outside it).
        with torch.inference_mode():
            self.runner.lora_manager.add(name, str(path))
        # A fresh id per load keeps the prefix cache of a replaced adapter from being reused.
        self._lora_ids[name] = next(self._lora_counter)

    def unload_lora(self, name: str) -> None:
        """Remove adapter ``name``; ``Conflict`` while a request uses it, ``AdapterNotFound`` if absent."""
        if name not in self._lora_ids:
            raise AdapterNotFound(f"adapter {name!r} is not loaded", param="model")
        self._check_unused(name)
        with torch.inference_mode():
            self.runner.lora_manager.remove(name)
        del self._lora_ids[name]

    def _check_unused(self, name: str) -> None:
        if any(s.request.lora == name for s in self._requests.values()):
            raise Conflict(f"adapter {name!r} is in use by queued or running requests", param="model")

    def lora_names(self) -> list[str]:
        return sorted(self._lora_ids)

    # ---- observability ------------------------------------------------------------------------
    def stats(self) -> EngineStats:
        bm = self.block_manager
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_cache_usage=bm.usage,
            num_kv_blocks=bm.num_blocks,
            prefix_cache_queries=bm.prefix_queries,
            prefix_cache_hits=bm.prefix_hits,
            prompt_tokens_total=self._prompt_tokens,
            generation_tokens_total=self._generation_tokens,
            num_preemptions=self._preemptions,
            num_steps=self._steps,
            queue_time_counts=list(self._queue_time_counts),
            queue_time_sum=self._queue_time_sum,
        )

    def generate(self, requests: list[GenerateRequest]) -> dict[str, list[list[int]]]:
        """Run ``requests`` to completion; token ids per request and choice (tests, offline use)."""
        for r in requests:
            self.add_request(r)
        tokens: dict[str, list[list[int]]] = {r.request_id: [[] for _ in range(r.params.n)] for r in requests}
        while self.has_unfinished():
            for o in self.step():
                if o.request_id in tokens:
                    tokens[o.request_id][o.index].extend(o.token_ids)
        return tokens


def weight_format(model: Any) -> str | None:
    """The weight format a loaded model holds: ``dual``, ``int8``, ``int4`` or None (plain)."""
    from modelyard.engine.layers.linear import Int4Weight, Linear

    linears = [m for m in model.modules() if isinstance(m, Linear) and m.qweight is not None]
    if not linears:
        return None
    if any(m.weight is not None for m in linears):
        return "dual"
    return "int4" if any(isinstance(m.qweight, Int4Weight) for m in linears) else "int8"
