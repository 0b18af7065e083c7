"""The tracking seam: where eval runs and fine-tunes record params, metrics, datasets and artifacts.

:class:`Tracker` contract: ``start_run(experiment, run_name, params, tags)`` creates a run (and the
experiment on first use) and returns a :class:`TrackedRun`. A run is a context manager: leaving the
block ends it ``FINISHED``, or ``FAILED`` when the block raised, unless :meth:`TrackedRun.end` was
called first. Calls are blocking (a local SQLite store or an HTTP call): call them from a worker
thread in async code. Values are logged as given; MLflow stores params as strings.

Implementations: :class:`~modelyard.tracking.null.NullTracker` (records nothing; runs live in
modelyard's own store only) and :class:`~modelyard.tracking.mlflow_tracker.MLflowTracker`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol


class RunStatus(StrEnum):
    """MLflow's terminal run statuses."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class TrackedRun(Protocol):
    """One tracked run (module docstring). ``run_id`` is ``None`` where nothing is recorded."""

    @property
    def run_id(self) -> str | None: ...

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_input(self, name: str, digest: str, source: str, context: str | None = None) -> None:
        """Record the dataset the run read: its name, content digest and where it came from."""
        ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def set_tag(self, key: str, value: str) -> None: ...

    def end(self, status: RunStatus = RunStatus.FINISHED) -> None: ...

    def __enter__(self) -> TrackedRun: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Tracker(Protocol):
    """Creates tracked runs (module docstring)."""

    @property
    def name(self) -> str: ...

    def start_run(
        self,
        experiment: str,
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> TrackedRun: ...
