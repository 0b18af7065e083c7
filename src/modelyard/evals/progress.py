"""Progress sinks (:class:`~modelyard.evals.types.ProgressSink`): a rich progress bar, and none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@dataclass(slots=True)
class NullProgress:
    """Reports nothing; ``lines`` keeps what was logged. Set ``cancel`` to stop a run."""

    total: int = 0
    done: int = 0
    lines: list[str] = field(default_factory=list)
    cancel: bool = False

    def start(self, total: int, description: str) -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def log(self, line: str) -> None:
        self.lines.append(line)

    @property
    def cancelled(self) -> bool:
        return self.cancel


class RichProgress:
    """A progress bar on stderr; use as a context manager around the run."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, total: int, description: str) -> None:
        self._task = self._progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def log(self, line: str) -> None:
        self._progress.console.print(line, highlight=False)

    @property
    def cancelled(self) -> bool:
        return False
