"""The periodic tasks: listed only when enabled, and cheap to build (no scikit-learn, lingua or
embedder import until they run)."""

from __future__ import annotations

import subprocess
import sys

from modelyard.jobs.catalog import known_tasks
from modelyard.settings import Settings


def test_drift_tasks_are_listed_only_when_enabled() -> None:
    assert not [t for t in known_tasks(Settings()) if t.name.startswith("drift.")]
    on = Settings.model_validate({"monitoring": {"drift": {"enabled": True, "interval_s": 7}}})
    tasks = {t.name: t for t in known_tasks(on)}
    assert tasks["drift.consume"].every_s == 7 and "drift.monitors" in tasks


def test_building_the_app_and_the_tasks_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from modelyard.app import create_app\n"
        "from modelyard.jobs.catalog import known_tasks\n"
        "from modelyard.settings import Settings\n"
        "s = Settings.model_validate({'monitoring': {'drift': {'enabled': True}}})\n"
        "create_app(s); known_tasks(s)\n"
        "import modelyard.cli, modelyard.http.admin.drift, modelyard.monitoring.drift.metrics\n"
        "heavy = [m for m in ('sklearn', 'lingua', 'matplotlib', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
