"""Our BERT encoder against sentence-transformers on the packaged MiniLM: same vectors, same token
counts and decoding, truncation at the model's limit, and the loader choosing it only for folders of
the shape it implements."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelyard.bert_encoder import BertEmbedder, supported
from modelyard.embeddings import SentenceTransformerEmbedder, load_embedder, resolve_source

SOURCE = "packaged:all-minilm-l6-v2"
TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "",
    "ünïcödé, émojis 🙂 and CJK 東京 mixed in",
    "A longer passage. " * 200,  # past the 256-token limit: truncated
    "short",
    "The quick brown fox jumps over the lazy dog, twice: the quick brown fox jumps over the lazy dog.",
]


@pytest.fixture(scope="module")
def reference() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(SOURCE, max_batch=3)


@pytest.fixture(scope="module")
def ours() -> BertEmbedder:
    return BertEmbedder(resolve_source(SOURCE), max_batch=3)


def test_vectors_match_sentence_transformers(
    ours: BertEmbedder, reference: SentenceTransformerEmbedder
) -> None:
    got, want = ours.embed(TEXTS), reference.embed(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(got * want, axis=1))) > 0.99999
    assert np.abs(got - want).max() < 1e-4
    # a batch is independent of its neighbours: one text alone gives the same vector
    assert np.abs(ours.embed([TEXTS[1]])[0] - got[1]).max() < 1e-5
    assert ours.embed([]).shape == (0, 384)


def test_tokens_and_limits_match(ours: BertEmbedder, reference: SentenceTransformerEmbedder) -> None:
    assert ours.count_tokens(TEXTS) == reference.count_tokens(TEXTS)
    assert ours.count_tokens(TEXTS)[4] > ours.max_input_tokens == reference.max_input_tokens == 256
    assert (ours.dimensions, ours.max_input_tokens) == (reference.dimensions, reference.max_input_tokens)
    ids = [101, 2054, 2003, 1996, 3007, 1997, 2605, 1029, 102]
    assert ours.decode(ids) == reference.decode(ids) == "what is the capital of france?"


def test_loader_picks_ours_only_for_the_shape_it_implements(tmp_path: Path) -> None:
    assert isinstance(load_embedder(SOURCE), BertEmbedder)
    folder = tmp_path / "minilm"
    shutil.copytree(resolve_source(SOURCE), folder)
    assert supported(folder)
    pooling = folder / "1_Pooling" / "config.json"
    cfg = json.loads(pooling.read_text())
    pooling.write_text(json.dumps(cfg | {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    assert not supported(folder)
    assert isinstance(load_embedder(str(folder)), SentenceTransformerEmbedder)
