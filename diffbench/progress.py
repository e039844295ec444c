"""What ``run`` shows while it measures: a live bar on a terminal, plain lines elsewhere.

The bar counts result rows (measurements) done of the planned total, with the elapsed time,
an ETA and the counts by status; step-sweep points are counted beside it, not in it. The
total is planned from the cases and options (every method, variant, dtype and order a case
gets) and corrected when a case finishes with a different number of rows (one row for a case
that cannot run, extra rows for a GPU), so it ends exactly at the number of measurements the
report counts. When standard output is not a terminal (a log, CI) each finished case prints
one plain line to stderr instead.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, TextIO

from .results import STATUSES, SWEEP

#: statuses in the order the counts are shown
_ORDER = list(STATUSES)


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{status} {counts[status]}" for status in _ORDER + sorted(set(counts) - set(_ORDER))
                     if counts[status])


class RunProgress:
    """Progress of a run: feed it rows as they arrive and the names of finished cases.

    ``planned`` maps each case to the number of measurement rows it is expected to produce;
    ``live`` chooses the rich bar (default: when stdout is a terminal); ``stream`` receives the
    plain lines (default: stderr).
    """

    def __init__(self, planned: dict[str, int], *, live: bool | None = None, stream: TextIO | None = None,
                 extra_tasks: int = 0) -> None:
        self.planned = dict(planned)
        self.total = sum(planned.values())
        self.cases_total = len(planned) + extra_tasks
        self.cases_done = 0
        self.done = 0
        self.sweep = 0
        self.per_case: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.began = time.perf_counter()
        self.stream = stream or sys.stderr
        self.live = sys.stdout.isatty() if live is None else live
        self._bar: Any = None
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("[bold]rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
                                 transient=False)
            self._task = self._bar.add_task("rows", total=self.total, counts="")
            self._bar.start()

    def rows(self, rows: list[dict[str, Any]]) -> None:
        """Count rows as they arrive (step-sweep points apart)."""
        for row in rows:
            if row.get("method") == SWEEP:
                self.sweep += 1
                continue
            self.done += 1
            self.per_case[str(row.get("case"))] += 1
            self.counts[str(row.get("status"))] += 1
        self._refresh()

    def case_done(self, name: str) -> None:
        """A case (or the scaling study) finished: correct the total by what it really produced."""
        self.cases_done += 1
        if name in self.planned:
            self.total += self.per_case[name] - self.planned.pop(name)
        self._refresh()
        if not self.live:
            eta = self._eta()
            print(f"[{self.cases_done}/{self.cases_total}] {name}: {self.done}/{self.total} rows "
                  f"({_counts_text(self.counts) or 'none yet'}) {time.perf_counter() - self.began:.0f} s"
                  + (f", ETA {eta:.0f} s" if eta is not None else ""), file=self.stream, flush=True)

    def _eta(self) -> float | None:
        if not self.done or self.done >= self.total:
            return None
        elapsed = time.perf_counter() - self.began
        return elapsed / self.done * (self.total - self.done)

    def _refresh(self) -> None:
        if self._bar is not None:
            self.total = max(self.total, self.done)
            self._bar.update(self._task, completed=self.done, total=self.total, counts=_counts_text(self.counts))

    def close(self) -> None:
        """Stop the live bar (leaving its last state on screen)."""
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
            self._bar = None
