"""Experiment tracking of eval runs and fine-tunes behind one seam (see :mod:`modelyard.tracking.base`)."""

from __future__ import annotations

import importlib.util

from modelyard.errors import ConfigError
from modelyard.settings import Settings
from modelyard.tracking.base import RunStatus, TrackedRun, Tracker
from modelyard.tracking.null import NullTracker

__all__ = ["NullTracker", "RunStatus", "TrackedRun", "Tracker", "tracker_for"]


def tracker_for(settings: Settings) -> Tracker:
    """``tracking.backend``: ``none``; ``mlflow`` (a :class:`ConfigError` if the extra is missing);
    ``auto``: MLflow when importable, else none. Without ``tracking.uri`` MLflow uses a SQLite store
    and an artifact folder in the data dir."""
    backend = settings.tracking.backend
    if backend == "none":
        return NullTracker()
    if importlib.util.find_spec("mlflow") is None:
        if backend == "mlflow":
            raise ConfigError("tracking.backend=mlflow needs MLflow: pip install 'modelyard[mlflow]'")
        return NullTracker()
    from modelyard.tracking.mlflow_tracker import MLflowTracker

    if settings.tracking.uri:
        return MLflowTracker(settings.tracking.uri)
    data = settings.resolved_data_dir
    data.mkdir(parents=True, exist_ok=True)
    return MLflowTracker(f"sqlite:///{data / 'mlflow.db'}", data / "mlflow-artifacts")
