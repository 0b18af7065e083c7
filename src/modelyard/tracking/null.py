"""The tracker that records nothing (``tracking.backend: none``, or MLflow not installed)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from modelyard.tracking.base import RunStatus


class NullRun:
    """A run that records nothing; it only remembers its status (for callers and tests)."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: RunStatus | None = None

    @property
    def run_id(self) -> str | None:
        return None

    def log_params(self, params: dict[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        return None

    def log_input(self, name: str, digest: str, source: str, context: str | None = None) -> None:
        return None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        return None

    def set_tag(self, key: str, value: str) -> None:
        return None

    def end(self, status: RunStatus = RunStatus.FINISHED) -> None:
        if self.status is None:
            self.status = status

    def __enter__(self) -> NullRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(RunStatus.FAILED if exc_type is not None else RunStatus.FINISHED)


class NullTracker:
    name = "none"

    def start_run(
        self,
        experiment: str,
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> NullRun:
        return NullRun()
