"""The one call site where a finished eval run reaches experiment tracking (MLflow).

:func:`track_run` logs a run document through a tracker of the ``modelyard.tracking`` seam (the
``Tracker`` protocol: ``start_run(experiment, run_name, params, tags)`` returning a run with
``log_params`` / ``log_metrics`` / ``log_input`` / ``log_artifact`` / ``set_tag``). With no tracker
it does nothing: runs then live in modelyard's own store only. It blocks (a local SQLite store or an
HTTP call): call it from a worker thread. The experiment is ``eval/<suite name>``; the run name is
the run id; metrics are ``<target>.<summary field>``; the run document is the ``report`` artifact.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

METRICS = ("pass_rate", "mean_score", "latency_p50_s", "latency_p95_s", "errors", "cost_usd")


def track_run(doc: dict[str, Any], tracker: Any | None = None) -> str | None:
    """Log ``doc`` to ``tracker``; returns the tracked run id (None without a tracker)."""
    if tracker is None:
        return None
    params = {
        "suite": doc["suite"]["name"],
        "suite_digest": doc["suite"]["digest"],
        "dataset": f"{doc['dataset']['name']}@{doc['dataset'].get('version')}",
        "dataset_digest": doc["dataset"]["digest"],
        "repeats": doc["repeats"],
        "seed": doc["seed"],
        "targets": ",".join(f"{t['name']}={t.get('resolved') or t['ref']}" for t in doc["targets"]),
        "scorers": ",".join(f"{s['name']}:{s['type']}" for s in doc["scorers"]),
    }
    tags = {"modelyard.run_id": doc["run_id"], "git_commit": doc.get("git_commit") or ""}
    with tracker.start_run(f"eval/{doc['suite']['name']}", doc["run_id"], params, tags) as run:
        run.log_input(
            str(doc["dataset"]["name"]), str(doc["dataset"]["digest"]), "modelyard-dataset", "evaluation"
        )
        metrics = {
            f"{target}.{key}": float(summary[key])
            for target, summary in doc["summary"].items()
            for key in METRICS
            if isinstance(summary.get(key), int | float)
        }
        run.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "run.json"
            path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
            run.log_artifact(path, "report")
        run.set_tag("status", str(doc["status"]))
        return run.run_id  # type: ignore[no-any-return]
