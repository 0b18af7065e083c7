"""The llama.cpp baseline: batched multi-sequence decode on the packaged GGUF via ``llama-cpp-python``.

Follows llama.cpp's ``examples/batched``: every prompt is submitted in one ``llama_decode`` with its
own ``seq_id`` (prefill), then each step decodes one token per sequence in a single batch. Sampling
is greedy from the logits (argmax over the vocabulary), EOS is ignored.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import ProgressSink, ThroughputRun, now


def available() -> str | None:
    """``None`` when llama-cpp-python imports, else why not (the ``bench`` extra is optional)."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # an ImportError, or an OSError from a broken shared library
        return f"llama-cpp-python unavailable ({type(exc).__name__}: {exc}); pip install 'modelyard[bench]'"
    return None


@dataclass(slots=True)
class LlamaCppModel:
    """A loaded GGUF; :meth:`close` frees it. ``gpu`` is whether layers were offloaded."""

    lib: Any
    model: Any
    vocab_size: int
    gpu: bool
    load_s: float
    log_callback: Any = None  # kept alive as long as llama.cpp may call it

    def close(self) -> None:
        self.lib.llama_model_free(self.model)


def _silence(lib: Any) -> Any:
    # llama.cpp logs every load and context to stderr, which would tear rich's progress bars.
    callback = lib.llama_log_callback(lambda level, text, user_data: None)
    lib.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def load(gguf: Path, device: str) -> LlamaCppModel:
    import llama_cpp as lib

    log_callback = _silence(lib)
    lib.llama_backend_init()
    params = lib.llama_model_default_params()
    gpu = device.startswith("cuda") and bool(lib.llama_supports_gpu_offload())
    params.n_gpu_layers = -1 if gpu else 0
    start = now()
    model = lib.llama_model_load_from_file(str(gguf).encode(), params)
    load_s = now() - start
    if not model:
        raise RuntimeError(f"llama.cpp could not load {gguf}")
    vocab = lib.llama_model_get_vocab(model)
    return LlamaCppModel(lib, model, lib.llama_vocab_n_tokens(vocab), gpu, load_s, log_callback)


def _context(m: LlamaCppModel, sequences: int, tokens_per_seq: int, batch_tokens: int, threads: int) -> Any:
    lib = m.lib
    params = lib.llama_context_default_params()
    # With a split (non-unified) KV cache each sequence gets n_ctx / n_seq_max cells.
    params.n_ctx = sequences * (tokens_per_seq + 16)
    params.n_batch = batch_tokens
    params.n_ubatch = min(512, batch_tokens)
    params.n_seq_max = sequences
    params.n_threads = threads
    params.n_threads_batch = threads
    params.kv_unified = False
    params.no_perf = True
    ctx = lib.llama_init_from_model(m.model, params)
    if not ctx:
        raise RuntimeError("llama.cpp could not create a context")
    return ctx


def _decode(lib: Any, ctx: Any, batch: Any, entries: list[tuple[int, int, int, bool]]) -> None:
    """Fill ``batch`` with ``(token, pos, seq_id, wants_logits)`` entries and decode it."""
    for i, (token, pos, seq, logits) in enumerate(entries):
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = 1 if logits else 0
    batch.n_tokens = len(entries)
    rc = lib.llama_decode(ctx, batch)
    if rc != 0:
        raise RuntimeError(f"llama_decode failed with {rc}")


def _greedy(lib: Any, ctx: Any, rows: int, vocab: int) -> list[int]:
    # Outputs are stored contiguously in batch order of the tokens that asked for logits.
    logits = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(rows, vocab))
    return logits.argmax(axis=1).tolist()


def batched(
    m: LlamaCppModel,
    prompts: list[list[int]],
    max_tokens: int,
    threads: int,
    *,
    progress: ProgressSink,
    label: str = "llama.cpp",
) -> ThroughputRun:
    """All ``prompts`` decoded together as separate sequences; time from prefill to the last token."""
    lib = m.lib
    n = len(prompts)
    prompt_total = sum(len(p) for p in prompts)
    ctx = _context(m, n, max(len(p) for p in prompts) + max_tokens, max(prompt_total, n), threads)
    batch = lib.llama_batch_init(max(prompt_total, n), 0, 1)
    try:
        # Warm the context (graph allocation, thread pool) outside the timed region.
        _decode(lib, ctx, batch, [(prompts[0][0], 0, 0, True)])
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        with progress.task(label, max_tokens):
            start = now()
            entries = [
                (tok, pos, s, pos == len(p) - 1) for s, p in enumerate(prompts) for pos, tok in enumerate(p)
            ]
            _decode(lib, ctx, batch, entries)
            next_tokens = _greedy(lib, ctx, n, m.vocab_size)
            ttft = now() - start
            out = [[t] for t in next_tokens]
            generated = n
            progress.advance(1)
            for step in range(1, max_tokens):
                entries = [(next_tokens[s], len(p) + step - 1, s, True) for s, p in enumerate(prompts)]
                _decode(lib, ctx, batch, entries)
                next_tokens = _greedy(lib, ctx, n, m.vocab_size)
                for seq_out, t in zip(out, next_tokens, strict=True):
                    seq_out.append(t)
                generated += n
                progress.advance(1)
            wall = now() - start
    finally:
        lib.llama_batch_free(batch)
        lib.llama_free(ctx)
    return ThroughputRun(label, n, n, generated, wall, ttft, out)
