"""Plain records of experiments and their validation.

An experiment lives on a *route*: the ``model`` name clients call (``route_kind`` ``model``) or a
prompt id (``prompt``). Its *unit* says what is hashed for assignment: ``user`` (the OpenAI ``user``
field), ``header:NAME`` (a request header), ``tenant``, ``key`` or ``request`` (each request on its
own: what canaries use). Variants carry integer weights that
sum to 100 and a target (a model name or alias, a tenant adapter, a prompt version) with parameter
overrides. Status moves draft → running ⇄ paused → stopped → concluded (stopped and concluded are
final). Validation errors are :class:`~modelyard.errors.InvalidRequest` naming the bad field, so the
HTTP edge answers an OpenAI-shaped 400 and nothing is stored.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from modelyard.errors import Conflict, InvalidRequest, NotFound

TOTAL_WEIGHT = 100
MAX_VARIANTS = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADER = re.compile(r"^header:[A-Za-z0-9-]{1,128}$")
OVERRIDABLE = frozenset(
    {"temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "presence_penalty",
     "frequency_penalty"}
)  # fmt: skip
METRICS = (
    "feedback",
    "latency_ms",
    "ttft_ms",
    "itl_ms",
    "output_tokens",
    "cost",
    "error_rate",
    "refusal_rate",
)


class Status(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    CONCLUDED = "concluded"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.RUNNING, Status.STOPPED}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.STOPPED, Status.CONCLUDED}),
    Status.PAUSED: frozenset({Status.RUNNING, Status.STOPPED, Status.CONCLUDED}),
    Status.STOPPED: frozenset({Status.CONCLUDED}),
    Status.CONCLUDED: frozenset(),
}


class ExperimentNotFound(NotFound):
    pass


@dataclass(slots=True, frozen=True)
class Variant:
    """One arm: ``model`` (a model name, ``name@alias`` or ``name:version``) or ``adapter`` (a tenant
    adapter's name) replaces the request's model; ``prompt_version`` (a number or a label) picks the
    prompt version of a prompt route; ``params`` fill sampling parameters the request leaves unset."""

    name: str
    weight: int
    model: str | None = None
    adapter: str | None = None
    prompt_version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True, frozen=True)
class Experiment:
    id: str
    tenant: str | None
    route: str
    route_kind: str
    unit: str
    salt: str
    status: Status
    traffic_percent: int
    variants: tuple[Variant, ...]
    layout: tuple[tuple[int, int, str], ...]
    primary_metric: str
    guardrails: tuple[str, ...]
    description: str
    created_by: str
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    rollout: dict[str, Any] | None = None  # a canary's steps and state (experiments/canary.py)
    flag: str | None = None  # assign by this OpenFeature string flag instead of the hash

    @property
    def control(self) -> str:
        return self.variants[0].name

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "experiment",
            "tenant": self.tenant,
            "route": self.route,
            "route_kind": self.route_kind,
            "unit": self.unit,
            "salt": self.salt,
            "status": str(self.status),
            "traffic_percent": self.traffic_percent,
            "variants": [v.as_dict() for v in self.variants],
            "primary_metric": self.primary_metric,
            "guardrails": list(self.guardrails),
            "description": self.description,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "rollout": self.rollout,
            "flag": self.flag,
        }


def check_name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequest(
            f"`{param}` must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            param=param,
        )
    return value


def check_unit(unit: Any) -> str:
    if unit in ("user", "tenant", "key", "request") or (isinstance(unit, str) and _HEADER.match(unit)):
        return str(unit).lower()
    raise InvalidRequest("`unit` is one of user, tenant, key, request or header:NAME", param="unit")


def parse_variants(raw: Any) -> tuple[Variant, ...]:
    """Variants from their JSON form; the weights must be integers summing to 100."""
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        raise InvalidRequest(f"an experiment has 2 to {MAX_VARIANTS} variants", param="variants")
    out: list[Variant] = []
    for i, v in enumerate(raw):
        p = f"variants[{i}]"
        if not isinstance(v, dict):
            raise InvalidRequest("a variant is an object", param=p)
        unknown = set(v) - {"name", "weight", "model", "adapter", "prompt_version", "params"}
        if unknown:
            raise InvalidRequest(f"unknown variant field `{sorted(unknown)[0]}`", param=p)
        weight = v.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= TOTAL_WEIGHT:
            raise InvalidRequest("a weight is an integer from 0 to 100", param=f"{p}.weight")
        params = v.get("params") or {}
        if not isinstance(params, dict) or set(params) - OVERRIDABLE:
            bad = sorted(set(params) - OVERRIDABLE) if isinstance(params, dict) else ["?"]
            raise InvalidRequest(
                f"`{bad[0]}` cannot be overridden (allowed: {', '.join(sorted(OVERRIDABLE))})",
                param=f"{p}.params",
            )
        for key in ("model", "adapter", "prompt_version"):
            if v.get(key) is not None and not isinstance(v[key], str | int):
                raise InvalidRequest(f"`{key}` is a string", param=f"{p}.{key}")
        if v.get("model") and v.get("adapter"):
            raise InvalidRequest("a variant sets a model or an adapter, not both", param=p)
        pv = v.get("prompt_version")
        out.append(
            Variant(
                name=check_name(v.get("name"), f"{p}.name"),
                weight=weight,
                model=v.get("model"),
                adapter=v.get("adapter"),
                prompt_version=None if pv is None else str(pv),
                params=dict(params),
            )
        )
    if len({v.name for v in out}) != len(out):
        raise InvalidRequest("variant names must be unique", param="variants")
    total = sum(v.weight for v in out)
    if total != TOTAL_WEIGHT:
        raise InvalidRequest(
            f"the variants' weights sum to {total}; they must sum to {TOTAL_WEIGHT}", param="variants"
        )
    return tuple(out)


def check_metric(name: Any, param: str) -> str:
    if name not in METRICS:
        raise InvalidRequest(f"`{name}` is not a metric; one of {', '.join(METRICS)}", param=param)
    return str(name)


def check_transition(current: Status, target: Status) -> None:
    if target not in TRANSITIONS[current]:
        raise Conflict(f"an experiment that is {current} cannot become {target}")
