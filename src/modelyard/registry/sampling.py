"""Default sampling parameters of a model version, and where they come from.

A version's defaults apply to the request fields a request leaves unset (see
:mod:`modelyard.gateway.defaults` for the order of precedence). They come, field by field, highest
first, from:

1. an operator's override in the registry (``modelyard models defaults set``, ``PUT
   /admin/models/{name}/versions/{version}/defaults``);
2. the artifact itself, read once when the version is registered: ``generation_config.json`` of a
   Hugging Face folder (the fields vLLM's ``--generation-config auto`` reads) or the
   ``general.sampling.*`` metadata keys of a GGUF file;
3. the ``defaults`` block of the model in the settings (``local_models[].defaults``).

The packaged GGUFs carry no sampling metadata, so the settings ship defaults for them
(:data:`PACKAGED_DEFAULTS`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

from modelyard.errors import InvalidRequest

log = logging.getLogger("modelyard.registry")

MAX_DEFAULT_STOP = 4  # OpenAI's limit on `stop` sequences
MAX_STOP_CHARS = 256
MAX_DEFAULT_MAX_TOKENS = 1_000_000

# Gemma 3: the generation_config.json of google/gemma-3-270m (top_k 64, top_p 0.95, temperature 1.0).
# SmolLM2-135M-Instruct: greedy, not its card's temperature 0.2. For the quick start's question its
# first token is a near tie (logits 25.33 "The" vs 25.24 "L", fp32 transformers reference), so at 0.2
# one answer in three (8 of 30 measured) starts "L'Étoile, la Cité, ..." and loops; greedy answers
# "The capital of France is Paris." The card's top_p 0.9 stays for requests that set a temperature.
PACKAGED_DEFAULTS: dict[str, dict[str, Any]] = {
    "smollm2-135m-instruct": {"temperature": 0.0, "top_p": 0.9},
    "gemma-3-270m": {"temperature": 1.0, "top_k": 64, "top_p": 0.95},
}


@dataclass(slots=True, frozen=True)
class SamplingDefaults:
    """Default values for request fields; ``None`` means "no default here" (a lower layer decides).

    Ranges are those the OpenAI API accepts (temperature 0-2, top_p in (0, 1], penalties -2..2) plus
    the engine's own fields (``top_k`` >= 0 with 0 off, ``min_p`` 0-1, ``repetition_penalty`` > 0).
    ``max_tokens`` applies to chat and completions alike.
    """

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    stop: tuple[str, ...] | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, param: str = "defaults") -> SamplingDefaults:
        """Validate a JSON object of defaults; unknown keys and bad values raise :class:`InvalidRequest`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidRequest(f"{param} must be a JSON object", param=param)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(
                f"unknown default(s) {unknown} in {param}: use {sorted(known)}", param=f"{param}.{unknown[0]}"
            )
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is not None:
                values[key] = _check(key, value, f"{param}.{key}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as plain JSON (``stop`` as a list)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if f.name == "stop" else value
        return out

    def over(self, lower: SamplingDefaults) -> SamplingDefaults:
        """These defaults, with ``lower``'s filling the fields these leave unset."""
        return SamplingDefaults(
            **{
                f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(lower, f.name)
                for f in fields(self)
            }
        )

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


NO_DEFAULTS = SamplingDefaults()

_FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {  # name -> (low, high, low is exclusive)
    "temperature": (0.0, 2.0, False),
    "top_p": (0.0, 1.0, True),
    "min_p": (0.0, 1.0, False),
    "presence_penalty": (-2.0, 2.0, False),
    "frequency_penalty": (-2.0, 2.0, False),
    "repetition_penalty": (0.0, 2.0, True),
}


def _check(key: str, value: Any, param: str) -> Any:
    if key in _FLOAT_RANGES:
        low, high, open_low = _FLOAT_RANGES[key]
        ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        if not ok or not (low < value if open_low else low <= value) or value > high:
            bound = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
            raise InvalidRequest(f"invalid {param} {value!r}: a number in {bound}", param=param)
        return float(value)
    if key in ("top_k", "max_tokens"):
        low, high = (0, 1_000_000) if key == "top_k" else (1, MAX_DEFAULT_MAX_TOKENS)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRequest(f"invalid {param} {value!r}: an integer from {low} to {high}", param=param)
        return value
    # stop
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list | tuple)
        or not 1 <= len(stops) <= MAX_DEFAULT_STOP
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)
    ):
        raise InvalidRequest(
            f"invalid {param} {value!r}: 1 to {MAX_DEFAULT_STOP} non-empty strings of at most "
            f"{MAX_STOP_CHARS} characters",
            param=param,
        )
    return tuple(stops)


# -- what an artifact says about itself --------------------------------------------------------------

# generation_config.json keys vLLM reads (``get_diff_sampling_param``) -> our names.
_GENERATION_CONFIG_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "max_new_tokens": "max_tokens",
}
# GGUF metadata keys (gguf.constants.Keys.General.SAMPLING_*) -> our names.
_GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
}


def artifact_defaults(artifact_uri: str) -> SamplingDefaults:
    """The defaults a local artifact carries (none for a remote reference or an artifact without any).

    A value outside the accepted ranges is skipped with a warning rather than failing the registration.
    """
    path = Path(artifact_uri)
    raw: dict[str, Any] = {}
    try:
        if path.is_dir() and (path / "generation_config.json").is_file():
            config = json.loads((path / "generation_config.json").read_text())
            raw = {
                ours: config[theirs] for theirs, ours in _GENERATION_CONFIG_KEYS.items() if theirs in config
            }
        elif path.is_file() and path.suffix == ".gguf":
            raw = _gguf_sampling(path)
    except (OSError, ValueError, struct.error) as exc:
        log.warning("cannot read the sampling defaults of %s: %s", artifact_uri, exc)
        return NO_DEFAULTS
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = _check(key, value, key)
        except InvalidRequest as exc:
            log.warning("ignoring the default %s of %s: %s", key, artifact_uri, exc.message)
    return SamplingDefaults(**values)


# GGUF value types (gguf.constants.GGUFValueType) -> struct format of a scalar; 8 string, 9 array.
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _gguf_sampling(path: Path) -> dict[str, Any]:
    """The ``general.sampling.*`` values of a GGUF file's metadata (GGUF v2/v3, little-endian).

    Reads the key-value header only and skips arrays (the vocabulary) without decoding them:
    ``gguf.GGUFReader`` also maps every tensor and takes seconds on a small model.
    """
    with path.open("rb") as f:
        magic, version = f.read(4), struct.unpack("<I", f.read(4))[0]
        if magic != b"GGUF" or version < 2:
            raise ValueError(f"not a GGUF v2+ file (magic {magic!r}, version {version})")
        _tensors, count = struct.unpack("<QQ", f.read(16))
        out: dict[str, Any] = {}
        end = os.fstat(f.fileno()).st_size
        for _ in range(count):
            if f.tell() >= end:
                raise ValueError("the GGUF metadata runs past the end of the file")
            key = _gguf_string(f)
            kind = struct.unpack("<I", f.read(4))[0]
            ours = _GGUF_KEYS.get(key)
            if ours is not None and kind in _GGUF_SCALARS:
                fmt = "<" + _GGUF_SCALARS[kind]
                value = struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
                out[ours] = (
                    int(value) if ours == "top_k" else round(float(value), 6)
                )  # f32 -> 0.7, not 0.69999
            else:
                _gguf_skip(f, kind)
        return out


_MAX_GGUF_KEY = 65536


def _gguf_string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    if length > _MAX_GGUF_KEY:
        raise ValueError(f"a GGUF metadata key of {length} bytes: not a GGUF file")
    return f.read(length).decode("utf-8", errors="replace")


def _gguf_skip(f: BinaryIO, kind: int) -> None:
    if kind in _GGUF_SCALARS:
        f.seek(struct.calcsize(_GGUF_SCALARS[kind]), 1)
    elif kind == _GGUF_STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, 1)
    elif kind == _GGUF_ARRAY:
        item, n = struct.unpack("<IQ", f.read(12))
        if item in _GGUF_SCALARS:
            f.seek(n * struct.calcsize(_GGUF_SCALARS[item]), 1)
        else:
            end = os.fstat(f.fileno()).st_size
            for _ in range(n):
                _gguf_skip(f, item)
                if f.tell() > end:
                    raise ValueError("a GGUF array runs past the end of the file")
    else:
        raise ValueError(f"unknown GGUF value type {kind}")
