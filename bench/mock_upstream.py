"""A tiny OpenAI-compatible upstream on loopback, for the gateway tests and ``bench/gateway.py``.

It speaks the real wire format (JSON and SSE) and answers instantly. Completions echo the last user
message (or the prompt) word by word, honouring ``n``, ``max_tokens`` / ``max_completion_tokens``,
``stop``, ``logprobs`` / ``top_logprobs`` and ``stream_options.include_usage``. The upstream model id
picks a behaviour, so tests can inject faults::

    fail-500 / fail-429 / bad-request   always that error
    flaky                               every odd-numbered request answers 503
    slow                                streams 200 words, 50 ms apart
    midstream                           streams two chunks, then drops the connection
    judge                               a scripted LLM judge: reads ``EXPECTED:`` and ``ANSWER:`` lines of
                                        the last user message and answers ``{"score": 5|1, "reason"}``
                                        (5 when the answer contains the expected text, ignoring case)
    anything else                       normal

``GET /stats`` returns request counts per model and the number of streams in flight;
``GET /last/{model}`` the last request body an upstream model id received (what the gateway sent).

Run: ``python -P bench/mock_upstream.py --port 9001``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import struct
import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

STATS = web.AppKey("stats", dict)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return _json({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def _words(body: dict[str, Any], chat: bool) -> tuple[list[str], int]:
    if chat:
        texts = [m.get("content") or "" for m in body.get("messages", [])]
        texts = [t if isinstance(t, str) else " ".join(p.get("text", "") for p in t) for t in texts]
        last = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), {})
        content = last.get("content") or ""
        if not isinstance(content, str):
            content = " ".join(p.get("text", "") for p in content)
        prompt_tokens = sum(len(t.split()) for t in texts)
    else:
        prompt = body.get("prompt", "")
        content = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        prompt_tokens = len(content.split())
    if body.get("model") == "judge":
        return _judge_words(content), prompt_tokens
    words = ["echo:", *content.split()] if body.get("model") != "slow" else [f"w{i}" for i in range(200)]
    return words, prompt_tokens


def _judge_words(content: str) -> list[str]:
    fields = {}
    for line in content.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("EXPECTED", "ANSWER"):
            fields[key.strip()] = value.strip()
    expected, answer = fields.get("EXPECTED", ""), fields.get("ANSWER", "")
    ok = bool(expected) and any(e.strip().lower() in answer.lower() for e in expected.split("|") if e.strip())
    verdict = {"score": 5 if ok else 1, "reason": "contains the expected answer" if ok else "does not"}
    return orjson.dumps(verdict).decode().split(" ")


def _choice_words(body: dict[str, Any], words: list[str]) -> tuple[list[str], str]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    out: list[str] = []
    for w in words:
        if any(s in w for s in stops):
            return out, "stop"
        if limit is not None and len(out) >= limit:
            return out, "length"
        out.append(w)
    return out, "stop"


def _logprobs(body: dict[str, Any], tokens: list[str]) -> dict[str, Any] | None:
    if not body.get("logprobs"):
        return None
    k = body.get("top_logprobs") or 0
    return {
        "content": [
            {
                "token": t,
                "logprob": -0.1,
                "bytes": list(t.encode()),
                "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": list(t.encode())}][:k]
                + [{"token": f"alt{j}", "logprob": -3.0 - j, "bytes": None} for j in range(max(k - 1, 0))],
            }
            for t in tokens
        ],
        "refusal": None,
    }


async def completions(request: web.Request) -> web.StreamResponse:
    chat = request.path.endswith("/chat/completions")
    body = await request.json(loads=orjson.loads)
    model = body.get("model", "")
    stats = request.app[STATS]
    stats["requests"][model] += 1
    stats["last"][model] = body
    if model == "fail-500":
        return _error(500, "upstream exploded")
    if model == "fail-429":
        return _error(429, "slow down", code="rate_limit_exceeded")
    if model == "bad-request":
        return _error(400, "temperature is wrong", param="temperature", code="invalid_value")
    if model == "flaky" and stats["requests"][model] % 2 == 1:
        return _error(503, "try again")
    words, prompt_tokens = _words(body, chat)
    n = body.get("n") or 1
    picked, finish = _choice_words(body, words)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(picked) * n,
        "total_tokens": prompt_tokens + len(picked) * n,
    }
    rid = f"{'chatcmpl' if chat else 'cmpl'}-mock{stats['requests'][model]}"
    created = int(time.time())
    obj = "chat.completion" if chat else "text_completion"
    if not body.get("stream"):
        text = " ".join(picked)
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": _logprobs(body, picked),
                    "finish_reason": finish,
                }
                for i in range(n)
            ]
        else:
            choices = [
                {"index": i, "text": text, "logprobs": None, "finish_reason": finish} for i in range(n)
            ]
        return _json(
            {
                "id": rid,
                "object": obj,
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "system_fingerprint": "mock",
            }
        )
    resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await resp.prepare(request)
    stats["in_flight"] += 1
    try:
        obj += ".chunk" if chat else ""

        async def send(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            chunk = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": model,
                "choices": choices,
                **(extra or {}),
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

        if chat:
            await send(
                [
                    {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    for i in range(n)
                ]
            )
        for j, word in enumerate(picked):
            piece = word if j == 0 else " " + word
            for i in range(n):
                if chat:
                    await send(
                        [
                            {
                                "index": i,
                                "delta": {"content": piece},
                                "logprobs": _logprobs(body, [piece]),
                                "finish_reason": None,
                            }
                        ]
                    )
                else:
                    await send([{"index": i, "text": piece, "logprobs": None, "finish_reason": None}])
            if model == "slow":
                await asyncio.sleep(0.05)
            if model == "midstream" and j == 1:
                assert request.transport is not None
                request.transport.close()
                return resp
        for i in range(n):
            if chat:
                await send([{"index": i, "delta": {}, "finish_reason": finish}])
            else:
                await send([{"index": i, "text": "", "logprobs": None, "finish_reason": finish}])
        if (body.get("stream_options") or {}).get("include_usage"):
            await send([], {"usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        stats["completed_streams"] += 1
    finally:
        stats["in_flight"] -= 1
    return resp


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json(loads=orjson.loads)
    request.app[STATS]["requests"][body.get("model", "")] += 1
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = []
    for i, text in enumerate(inputs):
        seed = hashlib.sha256(str(text).encode()).digest()
        vec = [b / 255.0 for b in seed[:8]]
        emb: Any = vec
        if body.get("encoding_format") == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(len(str(t).split()) for t in inputs)
    return _json(
        {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def list_models(request: web.Request) -> web.Response:
    return _json(
        {"object": "list", "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "mock"}]}
    )


async def stats(request: web.Request) -> web.Response:
    s = request.app[STATS]
    return _json(
        {
            "requests": dict(s["requests"]),
            "in_flight": s["in_flight"],
            "completed_streams": s["completed_streams"],
        }
    )


async def last(request: web.Request) -> web.Response:
    body = request.app[STATS]["last"].get(request.match_info["model"])
    return _json(body) if body is not None else _error(404, "no request for that model yet")


def make_app() -> web.Application:
    app = web.Application()
    app[STATS] = {"requests": Counter(), "in_flight": 0, "completed_streams": 0, "last": {}}
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/stats", stats)
    app.router.add_get("/last/{model}", last)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
