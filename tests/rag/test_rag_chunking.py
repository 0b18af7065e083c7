"""Token-based chunking with the packaged MiniLM's tokenizer (the tokenizer only: fast)."""

from __future__ import annotations

from typing import Any

import pytest
from tokenizers import Tokenizer

from modelyard.embeddings import resolve_source
from modelyard.errors import InvalidRequest
from modelyard.rag.chunking import Chunking, chunk_document


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    tok = Tokenizer.from_file(str(resolve_source("packaged:all-minilm-l6-v2") / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def _tokens(tok: Any, text: str) -> int:
    return len(tok.encode(text, add_special_tokens=False).ids)


def test_chunks_respect_size_and_overlap_in_tokens(tokenizer: Any) -> None:
    words = " ".join(f"word{i}" for i in range(300))
    chunks = chunk_document("d", words, tokenizer, Chunking(size=40, overlap=8))
    assert len(chunks) > 5
    assert all(_tokens(tokenizer, c.text) <= 40 for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        a_words, b_words = a.text.split(), b.text.split()
        assert all(w.startswith("word") for w in a_words + b_words)  # cut on word boundaries only
        shared = [w for w in b_words if w in a_words]
        assert shared == b_words[: len(shared)] and 1 <= len(shared) <= 8  # the overlap, in words
    assert sorted({w for c in chunks for w in c.text.split()}) == sorted(words.split())  # nothing lost
    first_words = chunks[0].text.split()
    assert first_words[0] == "word0"
    assert chunks[-1].text.endswith("word299")
    assert len({c.id for c in chunks}) == len(chunks) and all(c.id.startswith("d#") for c in chunks)


def test_headings_are_kept_on_their_sections_chunks(tokenizer: Any) -> None:
    text = "# Billing\n" + "refund policy " * 60 + "\n## Shipping\n" + "parcel times " * 10
    chunks = chunk_document("faq", text, tokenizer, Chunking(size=32, overlap=4))
    billing = [c for c in chunks if "refund" in c.text]
    shipping = [c for c in chunks if "parcel" in c.text]
    assert len(billing) > 2 and all(c.text.startswith("# Billing\n") for c in billing)
    assert shipping and all(c.text.startswith("## Shipping\n") for c in shipping)
    assert all(_tokens(tokenizer, c.text) <= 32 + 1 for c in chunks)  # +1: the newline joins pieces


def test_same_text_gives_same_ids_and_an_edit_changes_only_its_chunk(tokenizer: Any) -> None:
    parts = [" ".join(f"p{j}w{i}" for i in range(30)) for j in range(3)]
    a = chunk_document(
        "d", "\n# A\n" + parts[0] + "\n# B\n" + parts[1] + "\n# C\n" + parts[2], tokenizer, Chunking(64, 0)
    )
    b = chunk_document(
        "d", "\n# A\n" + parts[0] + "\n# B\nchanged\n# C\n" + parts[2], tokenizer, Chunking(64, 0)
    )
    untouched = {c.id for c in a if "p1w" not in c.text}
    assert len(untouched) >= 2 and {c.id for c in a} & {c.id for c in b} == untouched


def test_bad_chunking_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        Chunking(size=4)
    with pytest.raises(InvalidRequest):
        Chunking(size=32, overlap=16)
