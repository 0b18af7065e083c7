"""Text scans shared by every string of a prompt: secret shapes (PL008) and hidden Unicode (PL009, PL010).

Secret shapes follow the providers' documented key formats (the same families gitleaks and GitHub
secret scanning detect); the generic ``api_key = ...`` shape also needs a value of 16+ characters
with letters and digits and a Shannon entropy of at least :data:`GENERIC_MIN_ENTROPY` bits per
character, so prose, Jinja expressions and placeholders (``your-key-here``, ``xxxx``) do not match.
A reported secret is never echoed: messages name its kind and show only a masked prefix.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

GENERIC_MIN_ENTROPY = 3.5
"""Bits per character a generic ``key = value`` value needs to count as a secret (random base64 ~6)."""


@dataclass(slots=True, frozen=True)
class TextHit:
    """A match in one string: the rule, a message without the secret, its offset and raw text."""

    rule: str
    message: str
    offset: int
    needle: str


_PLACEHOLDER = re.compile(r"(?i)example|your|xxxx|changeme|placeholder|dummy|redacted|\*\*\*|<|>|\.\.\.")

_SECRETS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    # (kind, pattern, characters of the match shown unmasked)
    (
        "OpenAI-style API key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{32,}"),
        3,
    ),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"), 4),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b"), 4),
    ("Slack token", re.compile(r"\bxox[abposr]-[0-9]{6,}-[A-Za-z0-9-]{8,}"), 5),
    ("private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"), 0),
)
_GENERIC = re.compile(
    r"(?i)\b((?:[a-z0-9]+[_-])*(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?key|"
    r"auth[_-]?token|access[_-]?token|password|passwd|client[_-]?secret|private[_-]?key))"
    r"\b[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_\-+/=.]{16,})"
)

BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_INVISIBLE_NON_CF = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # Hangul fillers, braille blank
_JOINERS = frozenset("\u200c\u200d")  # legitimate inside emoji sequences and Persian/Indic words


def entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    counts, n = Counter(text), len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def mask(secret: str, shown: int) -> str:
    """``secret`` with all but its first ``shown`` characters hidden (length kept out too)."""
    return secret[:shown] + "****"


def find_secrets(text: str) -> list[TextHit]:
    hits: list[TextHit] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern, shown in _SECRETS:
        for m in pattern.finditer(text):
            value = m.group(0)
            if kind != "private key block" and (_PLACEHOLDER.search(value) or not _mixed(value, kind)):
                continue
            taken.append(m.span())
            shape = kind if not shown else f"{kind} `{mask(value, shown)}`"
            hits.append(TextHit("PL008", f"{shape} in the text", m.start(), value))
    for m in _GENERIC.finditer(text):
        key, value = m.group(1), m.group(2)
        if any(a <= m.start(2) < b for a, b in taken):
            continue
        if _PLACEHOLDER.search(value) or not _mixed(value, "generic"):
            continue
        if entropy(value) < GENERIC_MIN_ENTROPY:
            continue
        hits.append(
            TextHit(
                "PL008", f"high-entropy value assigned to `{key}` (`{mask(value, 0)}`)", m.start(2), value
            )
        )
    return sorted(hits, key=lambda h: h.offset)


def _mixed(value: str, kind: str) -> bool:
    """Real keys mix letters and digits; a run of one character class is a placeholder or a word."""
    body = value.split("_", 1)[-1] if kind == "GitHub token" else value
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body) and len(set(body)) > 6


def find_hidden_unicode(text: str) -> list[TextHit]:
    """Runs of bidi controls (PL009) and invisible characters (PL010), one hit per run per line."""
    hits: list[TextHit] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        rule = _hidden_rule(text, i)
        if rule is None:
            i += 1
            continue
        j = i
        points: list[str] = []
        while j < n and text[j] != "\n" and _hidden_rule(text, j) == rule:
            if len(points) < 3:
                points.append(_describe(text[j]))
            j += 1
        more = f" and {j - i - len(points)} more" if j - i > len(points) else ""
        what = "bidirectional control" if rule == "PL009" else "invisible character"
        hits.append(TextHit(rule, f"{what} {', '.join(points)}{more}", i, ch))
        i = j
    return hits


def _hidden_rule(text: str, i: int) -> str | None:
    ch = text[i]
    if ch in BIDI:
        return "PL009"
    if ch in _JOINERS and 0 < i < len(text) - 1 and not text[i - 1].isascii() and not text[i + 1].isascii():
        if not text[i - 1].isspace() and not text[i + 1].isspace():
            return None
    if ch == "\ufeff" and i == 0:
        return None  # a byte-order mark at the very start is an encoding artefact, not hidden text
    if unicodedata.category(ch) == "Cf" or ch in _INVISIBLE_NON_CF:
        return "PL010"
    return None


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'FORMAT CHARACTER')}"
