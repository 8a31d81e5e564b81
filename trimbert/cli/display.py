"""The sweep's live terminal display (rich): a status table of the units and a progress bar.
"""

from __future__ import annotations

import time
from typing import Any

from trimbert.core.rank import is_main_process

# --------------------------------------------------------------------------------------------------
# The progress display


class SweepDisplay:
    """One rich display for a sweep: a status table of the units and an overall progress bar.

    Pass it as ``on_event`` to :func:`run_sweep` inside ``with SweepDisplay(console):``. On a console
    that is not a terminal (logs, CI) it prints one line per finished, failed or skipped unit instead.
    """

    _STYLES = {"pending": "dim", "running": "bold cyan", "done": "green", "skipped": "blue", "failed": "red"}

    def __init__(self, console: Any, title: str = "sweep", *, enabled: bool = True) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.title = title
        self.enabled = enabled and is_main_process()
        self.units: dict[str, dict[str, Any]] = {}
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        self.task = self.progress.add_task(title, total=0)
        self.live = None

    def __enter__(self) -> SweepDisplay:
        if self.enabled and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(
                get_renderable=self._render, console=self.console, refresh_per_second=4, transient=False
            )
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()

    def __call__(self, unit: str, state: str, detail: str = "") -> None:
        entry = self.units.setdefault(unit, {"state": "pending", "detail": "", "start": None, "end": None})
        if state == "running" and entry["start"] is None:
            entry["start"] = time.monotonic()
        if state in ("done", "failed") and entry["start"] is not None:
            entry["end"] = time.monotonic()
        entry["state"], entry["detail"] = state, detail
        finished = sum(e["state"] in ("done", "failed", "skipped") for e in self.units.values())
        self.progress.update(self.task, total=len(self.units), completed=finished)
        if self.live is None and self.enabled and state in ("done", "failed", "skipped"):
            took = f" ({entry['end'] - entry['start']:.0f} s)" if entry["end"] and entry["start"] else ""
            self.console.print(f"{state:>7} {unit}{took}: {detail}", highlight=False, markup=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(self.title), expand=False)
        for column in ("unit", "status", "time", "detail"):
            table.add_column(column, justify="right" if column == "time" else "left")
        now = time.monotonic()
        for unit, entry in self.units.items():
            start, end = entry["start"], entry["end"]
            took = "" if start is None else f"{(end or now) - start:.0f} s"
            table.add_row(
                Text(unit),
                Text(entry["state"], style=self._STYLES.get(entry["state"], "")),
                took,
                Text(entry["detail"]),
            )
        return Group(table, self.progress)
