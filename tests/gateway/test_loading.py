"""The modules concurrent model loads share are imported once before the loads start."""

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


def test_after_the_shared_imports_concurrent_first_imports_succeed() -> None:
    """In a fresh interpreter: import the shared modules, then resolve the loaders' names from 8
    threads at once; none may fail with "cannot import name"."""
    code = """
import threading
from modelyard.gateway.loading import import_shared_modules
import_shared_modules()
errors = []
def load():
    try:
        from transformers import PreTrainedTokenizerFast, AutoConfig  # noqa: F401
        from sentence_transformers import SentenceTransformer  # noqa: F401
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
