"""First imports of transformers and sentence-transformers names, one thread at a time.

transformers resolves its names lazily (``_LazyModule``): the first import of a name from two threads
at once can fail with "cannot import name 'PreTrainedTokenizerFast' from 'transformers'" (seen on a
fresh install, whose modules are compiled on first import, with two models loading together). Every
such import made while models load concurrently goes through :func:`import_names`, which holds one
process-wide lock, so only what a load needs is imported, when it needs it.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

_LOCK = threading.RLock()


def import_names(module: str, *names: str) -> tuple[Any, ...]:
    """``(module.name, ...)`` for ``names``, or ``(module,)`` when none is given, imported under the lock."""
    with _LOCK:
        mod = importlib.import_module(module)
        return tuple(getattr(mod, name) for name in names) if names else (mod,)
