"""What concurrent model loads import from transformers is imported safely: the shared names before
the loads start, the rest one thread at a time through ``modelyard.imports.import_names``."""

from __future__ import annotations

import importlib
import subprocess
import sys

from modelyard.gateway.loading import SHARED_IMPORTS, import_shared_modules


def test_every_shared_import_resolves_in_this_environment() -> None:
    """A renamed module or name upstream would silently bring the race back: fail here instead."""
    import_shared_modules()
    for module_name, names in SHARED_IMPORTS:
        module = importlib.import_module(module_name)
        for name in names:
            assert getattr(module, name) is not None, (module_name, name)


def test_concurrent_first_imports_through_import_names_succeed() -> None:
    """In a fresh interpreter: resolve the loaders' names (tokenizer, GGUF conversion, sentence-
    transformers) from 8 threads at once; none may fail with "cannot import name"."""
    code = """
import threading
from modelyard.imports import import_names
errors = []
def load():
    try:
        import_names("transformers", "PreTrainedTokenizerFast", "AutoConfig")
        import_names("transformers.integrations.ggml")
        import_names("transformers.models.auto.tokenization_auto", "TOKENIZER_MAPPING_NAMES")
        import_names("sentence_transformers", "SentenceTransformer")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=load) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("errors:", errors)
raise SystemExit(1 if errors else 0)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
