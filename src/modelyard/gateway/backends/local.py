"""The local backend: OpenAI requests in, the built-in engine's ``RequestOutput`` stream out.

Prompts are rendered with the model's own chat template (the engine supplies the Gemma turn
template for the base Gemma), tokenised here, checked against the context window, and submitted
as one :class:`GenerateRequest`. Closing the stream closes the engine generator, which aborts the
request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import orjson

from modelyard.engine.request import GenerateRequest, RequestOutput, SamplingParams, TokenLogprob, Usage
from modelyard.errors import (
    AdapterNotFound,
    Conflict,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    OverCapacity,
)
from modelyard.gateway.backends.base import BackendRequest, Endpoint
from modelyard.gateway.loading import ModelLoad
from modelyard.protocol.openai import ChatCompletionRequest, CompletionRequest
from modelyard.settings import LocalModelSettings, Settings

_QUANT_IN_NAME = re.compile(r"[.\-_](q\d[a-z0-9_]*|f16|bf16|f32)\.gguf$", re.IGNORECASE)
log = logging.getLogger("modelyard.gateway")
_UNLOAD_TRIES = 250  # x 20 ms: the engine drops an aborted request between two steps


class LocalBackend:
    """One model on the in-process engine (see :class:`~modelyard.gateway.backends.base.Backend`)."""

    endpoints = frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS})
    local = True

    def __init__(self, model: LocalModelSettings, settings: Settings) -> None:
        self.name = f"{model.name}#local"
        self.model = model.name
        self._cfg = model
        self._settings = settings
        self._engine: Any = None
        self._ids = itertools.count()
        self.source_path: str | None = None
        self.digest: str | None = None
        self._lora_locks: dict[str, asyncio.Lock] = {}
        self._lora_users: dict[str, int] = {}  # engine adapter id -> requests of this backend using it
        self._retired: set[str] = set()  # deleted adapters: refused, unloaded once unused
        self._unloads: set[asyncio.Task[None]] = set()
        self.load = ModelLoad(self.name, self.model)  # state and timings, kept by ModelLoader

    # ---- lifecycle ------------------------------------------------------------------------------
    def _load(self) -> Any:
        from modelyard.engine.async_engine import AsyncEngine
        from modelyard.engine.config import EngineConfig

        source = self._cfg.source.removeprefix("packaged:")
        cache_dir = self._settings.resolved_model_cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        return AsyncEngine.from_source(source, EngineConfig(**self._settings.engine), cache_dir=cache_dir)

    async def start(self) -> None:
        engine = await anyio.to_thread.run_sync(self._load)
        if self._cfg.chat_template is not None:
            engine.tokenizer.chat_template = self._cfg.chat_template
        loaded = engine.engine.loaded
        self.source_path, self.digest = str(loaded.source), str(loaded.digest)
        engine.start()
        self._engine = engine

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.shutdown()

    def ready(self) -> bool:
        return self._engine is not None

    def stats(self) -> dict[str, Any]:
        return asdict(self._engine.stats()) if self._engine is not None else {"loading": True}

    def registry_fields(self) -> dict[str, Any]:
        """What the registry records for this model's version (after ``start``)."""
        engine = self._engine
        assert engine is not None and self.source_path is not None
        match = _QUANT_IN_NAME.search(Path(self.source_path).name)
        return {
            "artifact_uri": self.source_path,
            # a GGUF file's digest is the engine's (remembered by size and mtime): no second hash
            "digest": f"sha256:{self.digest}" if Path(self.source_path).is_file() else None,
            "architecture": str(engine.engine.loaded.architecture),
            "context_length": int(engine.max_model_len),
            "quantization": match.group(1).upper() if match else None,
            "is_base_model": self._cfg.is_base_model or bool(engine.engine.loaded.is_base_model),
            "serving_params": {"engine": dict(self._settings.engine)},
        }

    # ---- requests -------------------------------------------------------------------------------
    def _prompt_ids(self, parsed: ChatCompletionRequest | CompletionRequest) -> list[int]:
        tok = self._engine.tokenizer
        if isinstance(parsed, ChatCompletionRequest):
            messages = [
                {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in parsed.messages
            ]
            if tok.chat_template is None:
                raise InvalidRequest(
                    f"model `{self.model}` has no chat template; use /v1/completions", param="model"
                )
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        prompt: Any = parsed.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
            if len(prompt) != 1:
                raise InvalidRequest("one prompt per request is supported", param="prompt")
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise InvalidRequest("one prompt per request is supported", param="prompt")
            prompt = prompt[0]
        if isinstance(prompt, list):
            return [int(t) for t in prompt]
        return list(tok(prompt, add_special_tokens=True)["input_ids"])

    def _generate_request(self, req: BackendRequest) -> tuple[GenerateRequest, int]:
        if self._engine is None:
            raise OverCapacity(f"model `{self.model}` is still loading; retry shortly")
        parsed = req.parsed
        assert isinstance(parsed, ChatCompletionRequest | CompletionRequest)
        ids = self._prompt_ids(parsed)
        window = int(self._engine.max_model_len)
        if isinstance(parsed, ChatCompletionRequest):
            max_tokens = parsed.effective_max_tokens()
            param = "max_completion_tokens" if parsed.max_completion_tokens is not None else "max_tokens"
            logprobs = (parsed.top_logprobs or 0) if parsed.logprobs else None
        else:
            max_tokens, param, logprobs = parsed.max_tokens, "max_tokens", parsed.logprobs
        if max_tokens is None:  # the engine's default (a model version's default was applied upstream)
            chat = isinstance(parsed, ChatCompletionRequest)
            limits = self._settings.limits
            default = limits.default_chat_max_tokens if chat else limits.default_max_tokens
            max_tokens = max(1, min(default, window - len(ids)))
        if len(ids) + max_tokens > window:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{len(ids) + max_tokens} tokens ({len(ids)} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion.",
                param="messages" if isinstance(parsed, ChatCompletionRequest) else "prompt",
            )
        del param
        params = SamplingParams(
            n=parsed.n or 1,
            max_tokens=max_tokens,
            temperature=1.0 if parsed.temperature is None else parsed.temperature,
            top_p=1.0 if parsed.top_p is None else parsed.top_p,
            top_k=max(parsed.top_k or 0, 0),
            min_p=parsed.min_p or 0.0,
            presence_penalty=parsed.presence_penalty or 0.0,
            frequency_penalty=parsed.frequency_penalty or 0.0,
            repetition_penalty=1.0 if parsed.repetition_penalty is None else parsed.repetition_penalty,
            seed=parsed.seed,
            stop=parsed.stop_list(),
            logprobs=logprobs,
        )
        rid = f"{req.request_id}-{next(self._ids)}"
        return GenerateRequest(
            request_id=rid,
            prompt_token_ids=ids,
            params=params,
            cache_salt=req.cache_salt or parsed.user,
            lora=req.lora.engine_name if req.lora is not None else None,
        ), len(ids)

    async def _ensure_lora(self, request: BackendRequest) -> None:
        """Load a tenant's private adapter into the engine on its first use (once, even under a burst)."""
        adapter = request.lora
        if adapter is None or self._engine is None or adapter.engine_name in self._engine.lora_names():
            return
        lock = self._lora_locks.setdefault(adapter.engine_name, asyncio.Lock())
        async with lock:
            if adapter.engine_name not in self._engine.lora_names():
                await self._engine.load_lora(adapter.engine_name, adapter.path)

    async def _acquire_lora(self, request: BackendRequest) -> str | None:
        """Count the request as a user of its adapter (refusing a deleted one) and load it if needed."""
        adapter = request.lora
        if adapter is None:
            return None
        name: str = adapter.engine_name
        if name in self._retired:
            raise ModelNotFound(
                f"The model `{adapter.model_name}` does not exist or you do not have access to it.",
                param="model",
            )
        self._lora_users[name] = self._lora_users.get(name, 0) + 1
        try:
            await self._ensure_lora(request)
        except BaseException:
            self._release_lora(name)
            raise
        return name

    def _release_lora(self, name: str | None) -> None:
        if name is None:
            return
        left = self._lora_users.get(name, 1) - 1
        if left > 0:
            self._lora_users[name] = left
            return
        self._lora_users.pop(name, None)
        if name in self._retired:
            self._schedule_unload(name)

    async def retire_adapter(self, engine_name: str) -> None:
        """A deleted adapter: refuse new requests for it at once and unload it from the engine (freeing
        its slot and weights) as soon as the requests already using it have finished; they finish
        normally with the adapter's weights."""
        self._retired.add(engine_name)
        self._lora_locks.pop(engine_name, None)
        if not self._lora_users.get(engine_name):
            await self._unload(engine_name)

    def loaded_adapters(self) -> list[str]:
        """Engine ids of the adapters loaded now."""
        return self._engine.lora_names() if self._engine is not None else []

    def _schedule_unload(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._unload(name))
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def _unload(self, name: str) -> None:
        for _ in range(_UNLOAD_TRIES):
            engine = self._engine
            if engine is None or name not in engine.lora_names() or self._lora_users.get(name):
                return
            try:
                await engine.unload_lora(name)
                return
            except AdapterNotFound:  # unloaded meanwhile
                return
            except Conflict:  # an aborted request of ours is still queued in the engine for a step
                await asyncio.sleep(0.02)
        log.warning("deleted adapter %s is still in use by the engine; it stays loaded for now", name)

    async def complete(self, request: BackendRequest) -> bytes:
        lora = await self._acquire_lora(request)
        try:
            return await self._complete(request)
        finally:
            self._release_lora(lora)

    async def _complete(self, request: BackendRequest) -> bytes:
        gen_req, _ = self._generate_request(request)
        chat = request.endpoint is Endpoint.CHAT
        n = gen_req.params.n
        texts = [""] * n
        finish: list[str | None] = [None] * n
        logprobs: list[list[TokenLogprob]] = [[] for _ in range(n)]
        usage: Usage | None = None
        async for out in self._engine.generate(gen_req):
            texts[out.index] += out.text
            if out.logprobs:
                logprobs[out.index].extend(out.logprobs)
            if out.finish_reason is not None:
                finish[out.index] = out.finish_reason.value
            if out.usage is not None:
                usage = out.usage
        want_lp = gen_req.params.logprobs is not None
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": texts[i], "refusal": None},
                    "logprobs": {"content": [_chat_lp(t) for t in logprobs[i]], "refusal": None}
                    if want_lp
                    else None,
                    "finish_reason": finish[i],
                }
                for i in range(n)
            ]
        else:
            choices = [
                {
                    "index": i,
                    "text": texts[i],
                    "logprobs": _completion_lp(logprobs[i]) if want_lp else None,
                    "finish_reason": finish[i],
                }
                for i in range(n)
            ]
        return orjson.dumps(_envelope(request, chat, False, choices, _usage(usage)))

    async def stream(self, request: BackendRequest) -> AsyncIterator[bytes]:
        lora = await self._acquire_lora(request)
        try:
            # aclosing: closing this stream closes the engine stream at once (which aborts the request).
            async with contextlib.aclosing(self._stream(request)) as payloads:
                async for payload in payloads:
                    yield payload
        finally:
            self._release_lora(lora)

    async def _stream(self, request: BackendRequest) -> AsyncGenerator[bytes, None]:
        gen_req, _ = self._generate_request(request)
        chat = request.endpoint is Endpoint.CHAT
        parsed = request.parsed
        assert isinstance(parsed, ChatCompletionRequest | CompletionRequest)
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        want_lp = gen_req.params.logprobs is not None
        base = _envelope(request, chat, True, [], None)
        outputs = self._engine.generate(gen_req)
        try:
            first: RequestOutput = await outputs.__anext__()  # engine validation errors surface here
            if chat:
                roles = [
                    {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    for i in range(gen_req.params.n)
                ]
                yield orjson.dumps({**base, "choices": roles})
            usage: Usage | None = None
            out: RequestOutput | None = first
            while out is not None:
                if out.text or out.finish_reason is not None:
                    yield orjson.dumps({**base, "choices": [_chunk_choice(out, chat, want_lp)]})
                if out.usage is not None:
                    usage = out.usage
                out = await anext(outputs, None)
            if include_usage:
                yield orjson.dumps({**base, "choices": [], "usage": _usage(usage)})
        finally:
            await outputs.aclose()


def _envelope(req: BackendRequest, chat: bool, chunk: bool, choices: list[Any], usage: Any) -> dict[str, Any]:
    if chat:
        rid, obj = f"chatcmpl-{req.request_id}", "chat.completion.chunk" if chunk else "chat.completion"
    else:
        rid, obj = f"cmpl-{req.request_id}", "text_completion"
    body: dict[str, Any] = {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": req.model,
        "choices": choices,
        "system_fingerprint": "modelyard",
    }
    if usage is not None:
        body["usage"] = usage
    return body


def _usage(u: Usage | None) -> dict[str, Any] | None:
    if u is None:
        return None
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def _chat_lp(t: TokenLogprob) -> dict[str, Any]:
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": list(t.token.encode()),
        "top_logprobs": [{"token": s, "logprob": lp, "bytes": list(s.encode())} for _, s, lp in t.top],
    }


def _completion_lp(tokens: list[TokenLogprob]) -> dict[str, Any]:
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{s: lp for _, s, lp in t.top} for t in tokens],
        "text_offset": offsets,
    }


def _chunk_choice(out: RequestOutput, chat: bool, want_lp: bool) -> dict[str, Any]:
    finish = out.finish_reason.value if out.finish_reason is not None else None
    if chat:
        choice: dict[str, Any] = {
            "index": out.index,
            "delta": {"content": out.text} if out.text else {},
            "finish_reason": finish,
        }
        if want_lp:
            choice["logprobs"] = {"content": [_chat_lp(t) for t in out.logprobs or ()], "refusal": None}
        return choice
    return {
        "index": out.index,
        "text": out.text,
        "finish_reason": finish,
        "logprobs": _completion_lp(list(out.logprobs or ())) if want_lp else None,
    }
