"""Start-up does not import the RAG dependencies: the app, the admin API and the CLI load without them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("lancedb", "pyarrow", "pgvector", "ir_measures", "pgserver")


def test_app_and_cli_import_no_vector_store_client() -> None:
    code = (
        "import sys\n"
        "from modelyard.app import create_app\n"
        "from modelyard.settings import Settings\n"
        "import modelyard.cli\n"
        "create_app(Settings())\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
