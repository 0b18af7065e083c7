"""Redaction of secrets and personal data before anything reaches the request log.

Built-in pattern sets (``secrets``, ``email``, ``phone``, ``card``) plus any extra regular
expressions; each match becomes ``[REDACTED:<kind>]``. Card numbers are redacted only when they pass
the Luhn check, so order numbers and token ids survive. Works on nested JSON (messages lists).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_SECRETS = [
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}",  # OpenAI / Anthropic style keys
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",  # GitHub tokens
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}",
    r"(?i)\b(?:api[_-]?key|secret|password|passwd|token)\b\s*[:=]\s*\S+",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]
_EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"
_PHONE = (
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?"
    r"(?:\(\d{2,4}\)[\s.-]?\d{2,4}(?:[\s.-]\d{2,4}){1,3}|\d{2,4}(?:[\s.-]\d{2,4}){2,3})(?![\w])"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{2}[./-]\d{2}[./-]\d{4}$")
_CARD = r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"

BUILTIN: dict[str, list[str]] = {"secrets": _SECRETS, "email": [_EMAIL], "phone": [_PHONE], "card": [_CARD]}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Redactor:
    """Applies the chosen pattern sets; order: secrets, card, email, phone, then custom patterns."""

    def __init__(self, kinds: Iterable[str], extra: Iterable[str] = ()) -> None:
        order = [k for k in ("secrets", "card", "email", "phone") if k in set(kinds)]
        self._rules: list[tuple[str, re.Pattern[str]]] = []
        for kind in order:
            self._rules += [(kind, re.compile(p)) for p in BUILTIN[kind]]
        for p in extra:
            self._rules.append(("custom", re.compile(p)))

    def text(self, s: str) -> str:
        for kind, rx in self._rules:
            if kind == "card":
                s = rx.sub(_card_sub, s)
            elif kind == "phone":
                s = rx.sub(_phone_sub, s)
            else:
                s = rx.sub(f"[REDACTED:{kind}]", s)
        return s

    def value(self, v: Any) -> Any:
        """``v`` with every string inside (dicts and lists walked) redacted."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        return v


def _card_sub(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[REDACTED:card]" if 13 <= len(digits) <= 19 and _luhn(digits) else m.group(0)


def _phone_sub(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    if _DATE.match(m.group(0)):
        return m.group(0)
    return "[REDACTED:phone]" if 7 <= len(digits) <= 15 else m.group(0)
