"""A prompt's text, its canonical form and the canonical form's hash (the fingerprint).

The canonical form masks what varies between renderings of one template and keeps the rest:
URLs, e-mail addresses, UUIDs, dates and times, hex ids (8+ hex digits with at least one digit) and
numbers become ``<url>``, ``<email>``, ``<uuid>``, ``<date>``, ``<hex>``, ``<num>``; then the text is
lower-cased and runs of whitespace become one space. So "Order 1234 on 2026-12-01" and
"order 99  on 2025-01-31" share a fingerprint, and a changed word does not.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

# Order matters: a URL may hold an e-mail or numbers, a UUID is hex, a date is numbers.
_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:https?|ftp)://[^\s<>\"']+|\bwww\.[^\s<>\"']+", re.I), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
            r"|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|\b\d{1,2}:\d{2}(?::\d{2})?\b"
        ),
        "<date>",
    ),
    (re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"[-+]?\d+(?:[.,]\d+)*"), "<num>"),
]
_SPACE = re.compile(r"\s+")


def canonical(text: str) -> str:
    """The canonical form of ``text`` (module docstring)."""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return _SPACE.sub(" ", text.lower()).strip()


def fingerprint(text: str) -> str:
    """The SHA-256 (hex) of the canonical form of ``text``."""
    return hashlib.sha256(canonical(text).encode("utf-8")).hexdigest()


def prompt_text(prompt: Any) -> str:
    """The text a drift monitor watches in a request-log ``prompt``: the user messages' text of a chat
    request (every message's when none is from the user), the prompt of a completion, the input of
    an embeddings call; lists are joined with newlines."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        for key in ("messages", "prompt", "input"):
            if key in prompt:
                return prompt_text(prompt[key])
        return _content(prompt.get("content"))
    if isinstance(prompt, list):
        messages = [m for m in prompt if isinstance(m, dict) and "role" in m]
        if messages:
            users = [m for m in messages if m.get("role") == "user"] or messages
            return "\n".join(t for t in (_content(m.get("content")) for m in users) if t)
        return "\n".join(t for t in (prompt_text(p) for p in prompt if not isinstance(p, int)) if t)
    return ""


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""
