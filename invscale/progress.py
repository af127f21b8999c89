"""Progress a user sees: a live bar on a terminal, plain lines in a log.

A batch job's log (standard error that is not a terminal) gets one line when the work starts, one
whenever a tenth more is done or a minute has passed since the last, and one at the end, each with
done/total, the rate and the time left; a terminal gets rich's bar with the same figures.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

LINE_SECONDS = 60.0  # a log line at least this often while work goes on
LINE_FRACTION = 0.1  # and whenever this much more of the work is done


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


class ProgressReport:
    """Progress of ``total`` units of work labelled ``label``, shown on ``console`` (nothing at all
    unless ``enabled``); a context manager whose :meth:`advance` is called as work finishes."""

    def __init__(self, console: Console, label: str, total: int, unit: str = "items", enabled: bool = True):
        self.console, self.label, self.total, self.unit, self.enabled = console, label, total, unit, enabled
        self.done, self.detail = 0, ""
        self.started = self.last_line = time.perf_counter()
        self.last_fraction = 0.0
        self.bar: Progress | None = None
        self.extra_tasks: dict[str, int] = {}

    def __enter__(self) -> "ProgressReport":
        if not self.enabled:
            return self
        if self.console.is_terminal:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, detail="")
        else:
            self._line("started")
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, value, traceback)
        elif kind is None and self.enabled:
            self._line("done")

    def add_counter(self, name: str, total: int, detail: str = "") -> None:
        """A second bar (on a terminal only), e.g. streamed layers; advanced by :meth:`count`."""
        if self.bar is not None:
            self.extra_tasks[name] = self.bar.add_task(name, total=total, detail=detail)

    def count(self, name: str) -> None:
        """One more step of the counter ``name``."""
        if self.bar is not None:
            self.bar.update(self.extra_tasks[name], advance=1)

    def advance(self, units: int, detail: str = "") -> None:
        """``units`` more done; ``detail`` (e.g. a token rate) is shown beside the count."""
        self.done += units
        self.detail = detail
        if self.bar is not None:
            self.bar.update(self.task, advance=units, detail=detail)
            return
        if not self.enabled:
            return
        now, fraction = time.perf_counter(), self.done / max(self.total, 1)
        if now - self.last_line >= LINE_SECONDS or fraction - self.last_fraction >= LINE_FRACTION:
            self._line()

    def _line(self, state: str = "") -> None:
        now = time.perf_counter()
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%)"]
        if state != "started":
            parts.append(f"{rate:,.1f} {self.unit}/s")
        if state == "" and rate > 0:
            parts.append(f"about {_duration((self.total - self.done) / rate)} left")
        if state == "done":
            parts.append(f"in {_duration(elapsed)}")
        if self.detail and state != "started":
            parts.append(self.detail)
        self.console.print(", ".join(parts), soft_wrap=True, markup=False, highlight=False)
        self.last_line, self.last_fraction = now, self.done / max(self.total, 1)
