"""Convert a GGUF file into the Hugging Face folder the engine loads, without transformers' GGUF model path.

transformers builds a GGUF model by parsing the file's metadata (all 262k Gemma tokens included)
three times with ``gguf.GGUFReader`` at several microseconds a value, initialising a model and
copying into it: 35 s for SmolLM2 and about 2 minutes for Gemma 3 on two cores. This module does
the same conversion directly, with the same results:

- the metadata and the tensor table are read once, with ``struct`` over a memory map (string arrays
  are only counted: the tokenizer reads its own);
- ``config.json`` comes from transformers' own GGUF key tables (``GGUF_CONFIG_MAPPING``) and config
  class, as ``AutoConfig.from_pretrained(gguf_file=...)`` builds it;
- every tensor is dequantised by the ``gguf`` package's numpy kernels (the ones transformers calls),
  renamed to the Hugging Face name and post-processed as transformers' tensor processors do
  (llama.cpp's Q/K row permutation undone for Llama, the ``+1`` of Gemma's norms removed), several
  tensors at a time in threads (numpy releases the GIL);
- the tokenizer is transformers' own GGUF tokenizer conversion, called on the tokenizer class
  ``AutoTokenizer`` picks, without the model config detour that re-parses the file.

``tests/engine/test_gguf_convert.py`` checks tensors, config and tokenizer files against the
transformers path. Only the architectures the engine runs are converted here (:data:`ARCHITECTURES`).
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import ConfigError

log = logging.getLogger("modelyard.engine")

ARCHITECTURES = ("llama", "gemma3")
PROGRESS_EVERY_S = 2.0
"""How often a running conversion logs its progress (tensors done, elapsed, estimate)."""

_SCALAR = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_SHORT_ARRAY = 1024  # numeric arrays up to this long are kept as lists; longer ones only counted
_LLAMA_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GEMMA3_LAYER = {
    **_LLAMA_LAYER,
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_LAYER_NAMES = {"llama": _LLAMA_LAYER, "gemma3": _GEMMA3_LAYER}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


@dataclass(slots=True, frozen=True)
class ArrayCount:
    """A metadata array that was walked, not read (a vocabulary, merges, scores)."""

    count: int

    def __len__(self) -> int:
        return self.count


@dataclass(slots=True, frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # ggml order: fastest-moving first
    ggml_type: int
    offset: int  # absolute, in the file


@dataclass(slots=True)
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: list[TensorInfo]

    @property
    def architecture(self) -> str:
        return str(self.metadata["general.architecture"])


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8")
        self.pos += n
        return text

    def skip_strings(self, count: int) -> None:
        unpack, buf, pos = struct.unpack_from, self.buf, self.pos
        for _ in range(count):
            pos += 8 + unpack("<Q", buf, pos)[0]
        self.pos = pos

    def value(self, kind: int) -> Any:
        if kind in _SCALAR:
            return self.unpack(_SCALAR[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ConfigError(f"GGUF metadata value of unknown type {kind}")
        item, count = self.unpack("<I"), self.unpack("<Q")
        if item == _STRING:
            self.skip_strings(count)
            return ArrayCount(count)
        if item not in _SCALAR:
            raise ConfigError(f"GGUF metadata array of unsupported type {item}")
        size = struct.calcsize(_SCALAR[item])
        start, self.pos = self.pos, self.pos + size * count
        if count > _SHORT_ARRAY:
            return ArrayCount(count)
        return list(struct.unpack_from(f"<{count}{_SCALAR[item][1]}", self.buf, start))


def read_gguf(path: Path) -> GGUFFile:
    """The metadata (long arrays only counted) and tensor table of a GGUF v2/v3 file."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(memoryview(buf))
        try:
            if bytes(cur.buf[:4]) != b"GGUF":
                raise ConfigError(f"{path} is not a GGUF file (bad magic)")
            cur.pos = 4
            version = cur.unpack("<I")
            if version not in (2, 3):
                raise ConfigError(f"{path} is GGUF v{version}; only v2 and v3 are supported")
            n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cur.string()
                metadata[key] = cur.value(cur.unpack("<I"))
            table = []
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = cur.unpack("<I")
                dims = struct.unpack_from(f"<{n_dims}Q", cur.buf, cur.pos)
                cur.pos += 8 * n_dims
                table.append((name, tuple(dims), cur.unpack("<I"), cur.unpack("<Q")))
            align = int(metadata.get("general.alignment", 32))
            data_start = (cur.pos + align - 1) // align * align
        finally:
            cur.buf.release()
    tensors = [TensorInfo(n, d, t, data_start + off) for n, d, t, off in table]
    return GGUFFile(path, metadata, tensors)


def hf_config(gguf: GGUFFile) -> Any:
    """The transformers config ``AutoConfig.from_pretrained(..., gguf_file=...)`` builds for this file."""
    from modelyard.imports import import_names

    (AutoConfig,) = import_names("transformers", "AutoConfig")
    (ggml,) = import_names("transformers.integrations.ggml")

    arch = gguf.architecture
    names = {t.name for t in gguf.tensors}
    cfg: dict[str, Any] = {"tie_word_embeddings": "output.weight" not in names}
    for key, value in getattr(ggml, "GGUF_CONFIG_DEFAULTS_MAPPING", {}).get(arch, {}).items():
        cfg.setdefault(key, value)
    tables: dict[str, Any] = ggml.GGUF_CONFIG_MAPPING
    for key, value in gguf.metadata.items():
        prefix, _, rest = key.partition(".")
        renamed = tables.get(prefix, {}).get(rest)  # general.*, tokenizer.* ids and <arch>.*
        if renamed is None or renamed == -1 or isinstance(value, ArrayCount):
            continue
        cfg[renamed] = value
    if cfg.get("model_type") == "gemma3":
        cfg["model_type"] = "gemma3_text"  # the GGUF holds the text backbone only
    if "vocab_size" not in cfg and "tokenizer.ggml.tokens" in gguf.metadata:
        cfg["vocab_size"] = len(gguf.metadata["tokenizer.ggml.tokens"])
    config = AutoConfig.for_model(**cfg)
    config.quantization_config = {"quant_method": "gguf", "gguf_file": gguf.path.name, "dequantize": False}
    config.dtype = "float32"
    return config


def hf_name(arch: str, gguf_name: str) -> str | None:
    """The Hugging Face parameter name of a GGUF tensor, or None for one transformers drops."""
    stem, _, suffix = gguf_name.rpartition(".")
    if stem in _TOP_NAMES:
        return f"{_TOP_NAMES[stem]}.{suffix}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _LAYER_NAMES[arch]:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[arch][parts[2]]}.{suffix}"
    return None  # e.g. rope_freqs: recomputed from the config


def _unpermute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (transformers' ``LlamaTensorProcessor``)."""
    dim = weights.shape[0] // n_head // 2
    w = weights.reshape(n_head, dim, 2, *weights.shape[1:])
    return w.swapaxes(2, 1).reshape(weights.shape)


def _tensor(buf: Any, info: TensorInfo, arch: str, config: Any) -> np.ndarray:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, dequantize
    from gguf.quants import quant_shape_to_byte_shape

    qtype = GGMLQuantizationType(info.ggml_type)
    shape = tuple(reversed(info.dims))
    n = int(np.prod(info.dims))
    plain = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}
    if qtype in plain:
        raw = np.frombuffer(buf, dtype=plain[qtype], count=n, offset=info.offset).reshape(shape)
    else:
        block, size = GGML_QUANT_SIZES[qtype]
        raw = np.frombuffer(buf, dtype=np.uint8, count=n * size // block, offset=info.offset)
        raw = raw.reshape(quant_shape_to_byte_shape(shape, qtype))
    weights = dequantize(raw, qtype)
    if arch == "llama" and (".attn_q." in info.name or ".attn_k." in info.name):
        heads = config.num_attention_heads if ".attn_q." in info.name else config.num_key_value_heads
        weights = _unpermute(weights, heads)
    elif arch == "gemma3" and "norm.weight" in info.name:
        weights = weights - 1
    return np.array(weights, dtype=np.float32, copy=True)  # own memory: the map closes after


def convert_gguf(path: Path, out: Path, *, threads: int | None = None) -> bool:
    """Write ``config.json``, ``model.safetensors`` and the tokenizer of ``path`` into ``out``.

    Returns whether the model is a base model (its tokenizer has no chat template). Logs the
    step, elapsed time and an estimate of the time left every :data:`PROGRESS_EVERY_S`.
    Raises ``ConfigError`` for an architecture outside :data:`ARCHITECTURES`.
    """
    import torch
    from safetensors.torch import save_file

    start = time.perf_counter()
    gguf = read_gguf(path)
    arch = gguf.architecture
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"{path.name}: GGUF architecture {arch!r} is not supported; use one of {ARCHITECTURES}"
        )
    log.info("converting %s (%s, %d tensors) into %s", path.name, arch, len(gguf.tensors), out)
    config = hf_config(gguf)
    wanted = [(t, hf_name(arch, t.name)) for t in gguf.tensors]
    if config.tie_word_embeddings:
        wanted = [(t, n) for t, n in wanted if n != "lm_head.weight"]
    total = sum(int(np.prod(t.dims)) for t, n in wanted if n is not None)
    progress = _Progress(path.name, total, start)
    state: dict[str, torch.Tensor] = {}
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:

        def one(item: tuple[TensorInfo, str]) -> tuple[str, np.ndarray]:
            info, name = item
            array = _tensor(buf, info, arch, config)
            progress.add(array.size)
            return name, array

        jobs = [(t, n) for t, n in wanted if n is not None]
        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            for name, array in pool.map(one, jobs):
                state[name] = torch.from_numpy(array)
    progress.step("writing weights")
    save_file(state, str(out / "model.safetensors"))
    del state
    config.save_pretrained(out)
    progress.step("building the tokenizer")
    tokenizer = _tokenizer_class(config.model_type).from_pretrained(path.parent, gguf_file=path.name)
    tokenizer.save_pretrained(out)
    log.info("converted %s in %.1fs", path.name, time.perf_counter() - start)
    return tokenizer.chat_template is None


def _tokenizer_class(model_type: str) -> Any:
    """The class ``AutoTokenizer`` picks for a GGUF of ``model_type`` (the generic fast one by default)."""
    from modelyard.imports import import_names

    (PreTrainedTokenizerFast,) = import_names("transformers", "PreTrainedTokenizerFast")
    try:
        TOKENIZER_MAPPING_NAMES, tokenizer_class_from_name = import_names(
            "transformers.models.auto.tokenization_auto",
            "TOKENIZER_MAPPING_NAMES",
            "tokenizer_class_from_name",
        )
    except (ImportError, AttributeError):
        return PreTrainedTokenizerFast
    name = TOKENIZER_MAPPING_NAMES.get(model_type)
    if isinstance(name, tuple):  # transformers 4: (slow, fast)
        name = name[1] or name[0]
    cls = tokenizer_class_from_name(name) if name else None
    return cls or PreTrainedTokenizerFast


class _Progress:
    """Logs a conversion's progress: the step, elapsed time and, while dequantising, the time left."""

    def __init__(self, what: str, total: int, start: float, log_fn: Callable[..., None] = log.info) -> None:
        self._what, self._total, self._start, self._log = what, max(total, 1), start, log_fn
        self._done = 0
        self._last = start

    def add(self, n: int) -> None:
        self._done += n  # from worker threads: a lost update only skews the estimate
        now = time.perf_counter()
        if now - self._last < PROGRESS_EVERY_S or self._done < self._total // 20:
            return  # the first 5% is too little to extrapolate from
        self._last = now
        elapsed = now - self._start
        left = elapsed * (self._total - self._done) / max(self._done, 1)
        self._log(
            "converting %s: dequantising %d%% of the weights, %.0fs elapsed, about %.0fs left for this step",
            self._what,
            100 * self._done // self._total,
            elapsed,
            left,
        )

    def step(self, name: str) -> None:
        self._log("converting %s: %s (%.0fs elapsed)", self._what, name, time.perf_counter() - self._start)
