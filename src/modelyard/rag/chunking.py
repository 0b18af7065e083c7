"""Token-based chunking with the embedder's own tokenizer.

A document is split into sections at Markdown headings (``#`` lines); each section's body is cut into
windows of at most ``size`` tokens (the heading's tokens included: the heading is repeated at the top
of each of its chunks) that overlap by up to ``overlap`` tokens. Windows start and end on word
boundaries (never inside a word's word-pieces) and
the chunk text is the original text between the tokens' character offsets, so nothing is re-decoded.
A chunk's id is ``<doc_id>#<sha256(text)[:12]>``: re-ingesting an unchanged chunk finds its id, and only
new or changed text is embedded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from modelyard.errors import InvalidRequest

_HEADING = re.compile(r"^#{1,6}\s+\S.*$", re.MULTILINE)


@dataclass(slots=True, frozen=True)
class Chunking:
    size: int = 128  # tokens per chunk, [CLS]/[SEP] excluded
    overlap: int = 16

    def __post_init__(self) -> None:
        if self.size < 8:
            raise InvalidRequest("`chunk_size` is at least 8 tokens", param="chunk_size")
        if not 0 <= self.overlap < self.size // 2:
            raise InvalidRequest(
                "`chunk_overlap` is 0 or more and under half `chunk_size`", param="chunk_overlap"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunking:
        return cls(int(data["size"]), int(data["overlap"]))


@dataclass(slots=True, frozen=True)
class Chunk:
    id: str
    doc_id: str
    index: int
    text: str
    hash: str


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sections(text: str) -> list[tuple[str, int, int]]:
    """(heading, body start, body end) per section; the first may have no heading."""
    marks = list(_HEADING.finditer(text))
    out: list[tuple[str, int, int]] = []
    start = 0
    heading = ""
    for m in marks:
        if m.start() > start:
            out.append((heading, start, m.start()))
        heading, start = m.group(0).strip(), m.end()
    out.append((heading, start, len(text)))
    return [(h, s, e) for h, s, e in out if text[s:e].strip() or h]


def chunk_document(doc_id: str, text: str, tokenizer: Any, chunking: Chunking) -> list[Chunk]:
    """The chunks of one document (see the module docstring)."""
    chunks: list[str] = []
    for heading, start, end in _sections(text):
        body = text[start:end]
        head_tokens = len(tokenizer.encode(heading, add_special_tokens=False).ids) if heading else 0
        budget = chunking.size - head_tokens
        if budget < max(8, 2 * chunking.overlap + 1):
            heading, budget = "", chunking.size  # a heading longer than the chunk: drop it from the chunks
        enc = tokenizer.encode(body, add_special_tokens=False)
        offsets, words = enc.offsets, enc.word_ids
        if not offsets:
            if heading:
                chunks.append(heading)
            continue
        step = budget - chunking.overlap
        first = 0
        while first < len(offsets):
            end = min(first + budget, len(offsets))
            while (
                end < len(offsets)
                and end > first + 1
                and words[end] is not None
                and words[end] == words[end - 1]
            ):
                end -= 1  # end on a word boundary
            piece = body[offsets[first][0] : offsets[end - 1][1]].strip()
            chunks.append(f"{heading}\n{piece}" if heading else piece)
            if end >= len(offsets):
                break
            nxt = max(first + 1, end - chunking.overlap, first + step - (first + budget - end))
            while nxt < end and words[nxt] is not None and words[nxt] == words[nxt - 1]:
                nxt += 1  # start on a word boundary
            first = nxt
    out = []
    for i, piece in enumerate(chunks):
        h = content_hash(piece)
        out.append(Chunk(f"{doc_id}#{h[:12]}", doc_id, i, piece, h))
    # the same text twice in one document is one chunk (its id is its hash)
    seen: set[str] = set()
    return [c for c in out if not (c.id in seen or seen.add(c.id))]  # type: ignore[func-returns-value]
