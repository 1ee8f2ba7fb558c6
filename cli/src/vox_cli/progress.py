"""Byte progress for `vox pull`: one bar per file with total, speed and ETA."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class PullProgress:
    """Renders Ollama-style pull events ({status, file, completed, total})."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._last_status: str | None = None

    def __enter__(self) -> PullProgress:
        self._progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, event: dict[str, Any]) -> None:
        file = event.get("file")
        total = event.get("total")
        completed = event.get("completed")
        if file and total:
            task = self._tasks.get(file)
            if task is None:
                task = self._progress.add_task(str(file), total=total)
                self._tasks[file] = task
            self._progress.update(task, completed=completed or 0, total=total)
            return
        status = event.get("status")
        if status and status != self._last_status:
            self._last_status = status
            self._progress.console.print(f"[dim]{status}[/dim]")
