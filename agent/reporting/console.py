"""Showing a run to a person: stages, notes, progress bars, and the closing summary.

Everything goes to stderr, so ``--json`` output on stdout stays machine-readable.
Messages are printed as plain text (never as Rich markup): they can contain
labels, column names and model ids that came from the user's data.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text


class ConsoleReporter:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def stage(self, name: str, detail: str = "") -> None:
        self._stop_progress()
        line = Text("▶ ", style="bold cyan") + Text(name, style="bold")
        if detail:
            line += Text(f"  {detail}", style="dim")
        self.console.print(line)

    def info(self, message: str) -> None:
        self.console.print(Text(f"  {message}"))

    def warn(self, message: str) -> None:
        self.console.print(Text("  warning: ", style="yellow") + Text(message))

    def progress(self, task: str, done: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        if task not in self._tasks:
            self._tasks[task] = self._progress.add_task(task, total=total)
        self._progress.update(self._tasks[task], completed=done, total=total)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks = {}

    def summary(self, rows: list[tuple[str, str]]) -> None:
        self._stop_progress()
        table = Table(title="autoannotator-agent", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for name, value in rows:
            table.add_row(Text(name), Text(value))
        self.console.print(table)

    def close(self) -> None:
        self._stop_progress()
