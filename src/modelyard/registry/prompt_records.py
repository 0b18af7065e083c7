"""Plain records of the prompt registry, and the rules for names, labels and references.

A prompt reference is ``NAME`` (label ``production`` if set, else ``latest``), ``NAME@LABEL`` or
``NAME:VERSION`` (the CLI's spelling); a request's ``prompt.version`` is a string of digits (a
version number) or a label. ``latest`` is kept by the registry itself: it always names the highest
version and cannot be set or removed by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelyard.errors import InvalidRequest, NotFound
from modelyard.registry.prompt_spec import PromptSpec, spec_from_dict

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$")
LABEL_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
LATEST = "latest"
PRODUCTION = "production"
MAX_COMMIT_CHARS = 4000


class PromptNotFound(NotFound):
    """An unknown prompt, version or label, or a prompt the caller may not see (404, same words)."""

    code = "prompt_not_found"


def check_prompt_name(name: object, param: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid prompt name {name!r}: 1-128 letters, digits, '.', '_', '-', starting with a letter "
            "or digit",
            param=param,
        )
    return name


def check_label(label: object, param: str = "label") -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise InvalidRequest(
            f"invalid label {label!r}: 1-64 characters from lowercase letters, digits, '_', '.', '-', "
            "starting with a letter",
            param=param,
        )
    if label == LATEST:
        raise InvalidRequest("`latest` always names the newest version; it cannot be set", param=param)
    return label


@dataclass(slots=True, frozen=True)
class PromptVersionInfo:
    name: str
    tenant: str | None
    version: int
    content: dict[str, Any]
    digest: str
    commit_message: str
    author: str
    created_at: datetime
    labels: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``name:version``: what responses, the request log and metrics report."""
        return f"{self.name}:{self.version}"

    def spec(self) -> PromptSpec:
        # content() spells the kind it is not as null (``"text": null`` for a chat prompt).
        return spec_from_dict({k: v for k, v in self.content.items() if v is not None}, name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "prompt.version",
            "name": self.name,
            "tenant": self.tenant,
            "version": self.version,
            "digest": self.digest,
            "commit_message": self.commit_message,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "labels": list(self.labels),
            **self.content,
        }


@dataclass(slots=True, frozen=True)
class PromptInfo:
    """A prompt with all its versions (ascending) and labels (``latest`` included)."""

    name: str
    tenant: str | None
    created_at: datetime
    versions: tuple[PromptVersionInfo, ...]
    labels: dict[str, int]
    protected: frozenset[str] = frozenset()

    @property
    def latest(self) -> PromptVersionInfo | None:
        return self.versions[-1] if self.versions else None

    def version(self, number: int) -> PromptVersionInfo | None:
        return next((v for v in self.versions if v.version == number), None)

    def select(self, version: str | int | None, param: str = "prompt.version") -> PromptVersionInfo:
        """The version ``version`` names: digits a number, other text a label, None ``production``
        then ``latest``. :class:`PromptNotFound` naming ``param`` if there is none."""
        if version is None:
            number = self.labels.get(PRODUCTION)
            found = self.version(number) if number is not None else self.latest
        elif isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
            found = self.version(int(version))
        else:
            number = self.labels.get(version)
            found = self.version(number) if number is not None else None
        if found is None:
            what = "no versions" if version is None else f"no version or label `{version}`"
            raise PromptNotFound(f"the prompt `{self.name}` has {what}", param=param)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "prompt",
            "name": self.name,
            "tenant": self.tenant,
            "created_at": self.created_at.isoformat(),
            "labels": dict(self.labels),
            "protected_labels": sorted(self.protected),
            "latest_version": self.latest.version if self.latest else None,
            "versions": [v.to_dict() for v in self.versions],
        }


def parse_prompt_ref(ref: str) -> tuple[str, str | None]:
    """``NAME`` / ``NAME@LABEL`` / ``NAME:VERSION`` as (name, version-or-label or None)."""
    if "@" in ref:
        name, _, label = ref.partition("@")
        return name, label
    if ":" in ref:
        name, _, number = ref.rpartition(":")
        if number.isdigit():
            return name, number
    return ref, None
