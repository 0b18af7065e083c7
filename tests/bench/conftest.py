"""Make the repository's top-level ``bench`` package importable in these tests.

``bench/`` holds runnable scripts (``python -m bench.engine`` from the repository root), not an
installed package, and pytest puts ``tests/`` on ``sys.path``, where this very folder would shadow
it as a namespace package ``bench``. The repository root goes first instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if getattr(sys.modules.get("bench"), "__file__", "") is None:  # a namespace stand-in imported earlier
    del sys.modules["bench"]
