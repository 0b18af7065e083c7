"""Shared engine fixtures: tiny random HF model folders, and the real packaged models (slow)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .helpers import write_tiny_gemma3, write_tiny_llama


@pytest.fixture(scope="session", autouse=True)
def _hf_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised Llama (2 layers, GQA 4/2) saved by transformers, with a BPE tokenizer."""
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised Gemma 3 text model (3 layers, sliding window 4 on layers 0 and 2)."""
    return write_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where slow tests cache converted GGUF models (shared by the whole session)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def smollm2_loaded(model_cache_dir: Path):
    """The packaged SmolLM2-135M-Instruct GGUF loaded in float32 (first load converts and caches)."""
    from modelyard.engine.loader import load_model, packaged_model_path

    return load_model(
        packaged_model_path("smollm2-135m-instruct"), cache_dir=model_cache_dir, dtype=torch.float32
    )
