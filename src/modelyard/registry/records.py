"""Plain records the registry hands out, the reference grammar, and input validation.

:func:`resolve_in` is the one implementation of model-reference resolution: the
:class:`~modelyard.registry.service.Registry` uses it on rows it just read, and a server that
caches :meth:`Registry.list_models` (refreshing when :meth:`Registry.revision` changes) can use it
on its cache and get the same answers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelyard.errors import InvalidRequest, ModelNotFound
from modelyard.registry.sampling import NO_DEFAULTS, SamplingDefaults

PRODUCTION_ALIAS = "production"

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ARCHITECTURE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
QUANTIZATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
REMOTE_URI_RE = re.compile(r"^[a-z][a-z0-9_+.-]*://\S+$")

MAX_DESCRIPTION_CHARS = 4000
MAX_OWNER_CHARS = 128
MAX_URI_CHARS = 2048
MAX_TOKENIZER_CHARS = 2048
MAX_SERVING_PARAMS_BYTES = 16 * 1024
MAX_CONTEXT_LENGTH = 10_000_000
MAX_PRICE_PER_1K = 1_000_000.0


@dataclass(slots=True, frozen=True)
class VersionInfo:
    """One immutable version of a model. ``digest`` is ``sha256:<hex>``, or None for a remote reference.

    ``artifact_defaults`` are the sampling defaults the artifact carries (read at registration);
    ``default_overrides`` an operator's, which win field by field (see :attr:`defaults`).
    """

    model: str
    version: int
    artifact_uri: str
    digest: str | None
    architecture: str
    tokenizer: str | None
    context_length: int
    quantization: str | None
    serving_params: dict[str, Any]
    created_at: datetime
    aliases: tuple[str, ...] = ()
    artifact_defaults: SamplingDefaults = NO_DEFAULTS
    default_overrides: SamplingDefaults = NO_DEFAULTS

    @property
    def defaults(self) -> SamplingDefaults:
        """The registry's sampling defaults of this version (overrides over the artifact's)."""
        return self.default_overrides.over(self.artifact_defaults)


@dataclass(slots=True, frozen=True)
class Prices:
    """A model's prices per 1000 prompt and completion tokens (money units of the budgets)."""

    prompt_per_1k: float
    completion_per_1k: float

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            prompt_tokens / 1000.0 * self.prompt_per_1k + completion_tokens / 1000.0 * self.completion_per_1k
        )


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """A registered model with all its versions (ascending) and its aliases (alias -> version)."""

    name: str
    description: str
    is_base_model: bool
    owner: str | None
    created_at: datetime
    versions: tuple[VersionInfo, ...] = ()
    aliases: dict[str, int] = field(default_factory=dict)
    prices: Prices | None = None

    @property
    def latest(self) -> VersionInfo | None:
        return self.versions[-1] if self.versions else None

    def version(self, number: int) -> VersionInfo | None:
        for info in self.versions:
            if info.version == number:
                return info
        return None


@dataclass(slots=True, frozen=True)
class ResolvedModel:
    """What a model reference points at: everything a backend needs to serve it."""

    name: str
    version: int
    artifact_uri: str
    digest: str | None
    architecture: str
    tokenizer: str | None
    context_length: int
    quantization: str | None
    is_base_model: bool
    serving_params: dict[str, Any]
    aliases: tuple[str, ...]
    defaults: SamplingDefaults = NO_DEFAULTS


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """Split ``name``, ``name@alias`` or ``name:version`` into ``(name, alias, version)``.

    Raises :class:`ModelNotFound` (``param="model"``) for a reference no model can have.
    """
    if not isinstance(ref, str) or not ref:
        raise ModelNotFound("a model reference must be 'name', 'name@alias' or 'name:version'", param="model")
    name, alias, version = ref, None, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if not ALIAS_RE.match(alias):
            raise ModelNotFound(f"the model '{ref}' does not exist: invalid alias '{alias}'", param="model")
    elif ":" in ref:
        name, number = ref.split(":", 1)
        if not number.isdigit() or int(number) < 1:
            raise ModelNotFound(
                f"the model '{ref}' does not exist: a version is a positive integer, as in '{name}:1'",
                param="model",
            )
        version = int(number)
    if not NAME_RE.match(name):
        raise ModelNotFound(f"the model '{ref}' does not exist", param="model")
    return name, alias, version


def resolve_in(models: Mapping[str, ModelInfo], ref: str) -> ResolvedModel:
    """Resolve ``ref`` against ``models``: a bare name means alias ``production`` if set, else the latest version."""
    name, alias, number = parse_ref(ref)
    model = models.get(name)
    if model is None:
        raise ModelNotFound(f"the model '{name}' does not exist", param="model")
    if alias is not None:
        if alias not in model.aliases:
            known = ", ".join(sorted(model.aliases)) or "none"
            raise ModelNotFound(
                f"the model '{name}' has no alias '{alias}' (aliases: {known})", param="model"
            )
        number = model.aliases[alias]
    elif number is None:
        number = model.aliases.get(PRODUCTION_ALIAS)
        if number is None:
            if model.latest is None:
                raise ModelNotFound(f"the model '{name}' has no versions yet", param="model")
            number = model.latest.version
    info = model.version(number)
    if info is None:
        raise ModelNotFound(f"the model '{name}' has no version {number}", param="model")
    return ResolvedModel(
        name=model.name,
        version=info.version,
        artifact_uri=info.artifact_uri,
        digest=info.digest,
        architecture=info.architecture,
        tokenizer=info.tokenizer,
        context_length=info.context_length,
        quantization=info.quantization,
        is_base_model=model.is_base_model,
        serving_params=dict(info.serving_params),
        aliases=info.aliases,
        defaults=info.defaults,
    )


def check_name(name: object, param: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid model name {name!r}: 1-128 characters from letters, digits, '.', '_', '-', "
            "starting with a letter or digit",
            param=param,
        )
    return name


def check_alias(alias: object, param: str = "alias") -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise InvalidRequest(
            f"invalid alias {alias!r}: 1-64 characters from lowercase letters, digits, '_', '-', "
            "starting with a letter",
            param=param,
        )
    return alias


def check_version_number(version: object, param: str = "version") -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidRequest(f"invalid version {version!r}: a positive integer", param=param)
    return version


def check_text(value: object, param: str, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string", param=param)
    if len(value) > limit:
        raise InvalidRequest(f"{param} is {len(value)} characters long; the limit is {limit}", param=param)
    return value


def check_pattern(
    value: object, param: str, pattern: re.Pattern[str], what: str, *, optional: bool = False
) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidRequest(f"invalid {param} {value!r}: {what}", param=param)
    return value


def check_price(value: object, param: str) -> float:
    """A finite price per 1000 tokens from 0 to :data:`MAX_PRICE_PER_1K`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"invalid {param} {value!r}: a finite number", param=param)
    if not 0.0 <= value <= MAX_PRICE_PER_1K:
        raise InvalidRequest(f"invalid {param} {value!r}: from 0 to {MAX_PRICE_PER_1K:g}", param=param)
    return float(value)


def check_context_length(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONTEXT_LENGTH:
        raise InvalidRequest(
            f"invalid context_length {value!r}: an integer from 1 to {MAX_CONTEXT_LENGTH}",
            param="context_length",
        )
    return value


def check_serving_params(value: object) -> dict[str, Any]:
    """A JSON object of at most :data:`MAX_SERVING_PARAMS_BYTES` serialized bytes, returned as a copy."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("serving_params must be a JSON object", param="serving_params")
    try:
        encoded = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"serving_params is not plain JSON: {exc}", param="serving_params") from exc
    if len(encoded.encode()) > MAX_SERVING_PARAMS_BYTES:
        raise InvalidRequest(
            f"serving_params is {len(encoded.encode())} bytes as JSON; the limit is {MAX_SERVING_PARAMS_BYTES}",
            param="serving_params",
        )
    result: dict[str, Any] = json.loads(encoded)
    return result
