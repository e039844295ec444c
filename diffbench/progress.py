"""What ``run`` shows while it measures: a live bar on a terminal, plain lines elsewhere.

The bar counts result rows (measurements) done of the planned total, with the elapsed time,
an ETA and the counts by status; step-sweep points are counted beside it, not in it. The
total is planned from the cases and options (every method, variant, dtype and order a case
gets) and corrected when a case finishes with a different number of rows (one row for a case
that cannot run, extra rows for a GPU), so it ends exactly at the number of measurements the
report counts.

Nothing is silent for long: the runner reports each measurement as it starts
(:meth:`RunProgress.started`), so a case's start prints a line at once, and so does each
method it moves on to (the certified reference, then symbolic, tape, finite, ...), before
any row of it is done. When standard output is not a terminal (a log, CI) these are plain
lines on stderr; on a terminal the bar's description names what runs now.

The ETA is measured, never assumed: it is shown once a case has finished, from the rate of
rows done per second since the first measurement started (worker start-up left out), and
it follows that rate as the run goes on.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, Sequence, TextIO

from .results import STATUSES, SWEEP

#: statuses in the order the counts are shown
_ORDER = list(STATUSES)


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{status} {counts[status]}" for status in _ORDER + sorted(set(counts) - set(_ORDER))
                     if counts[status])


def format_eta(seconds: float | None) -> str:
    """An ETA for people: ``ETA 42 s``, ``ETA 3 min``; ``ETA after the first case`` when nothing is measured yet."""
    if seconds is None:
        return "ETA after the first case"
    if seconds < 90:
        return f"ETA {seconds:.0f} s"
    return f"ETA {seconds / 60:.0f} min"


class RunProgress:
    """Progress of a run: feed it measurement starts, rows as they arrive, and the names of finished cases.

    ``planned`` maps each case to the number of measurement rows it is expected to produce;
    ``live`` chooses the rich bar (default: when stdout is a terminal); ``stream`` receives the
    plain lines (default: stderr); ``clock`` is the time source (seconds, monotonic).
    """

    def __init__(self, planned: dict[str, int], *, live: bool | None = None, stream: TextIO | None = None,
                 extra_tasks: int = 0, clock: Any = time.perf_counter) -> None:
        self.planned = dict(planned)
        self.total = sum(planned.values())
        self.cases_total = len(planned) + extra_tasks
        self.cases_done = 0
        self.cases_started = 0
        self.done = 0
        self.sweep = 0
        self.per_case: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.clock = clock
        self.began = clock()
        #: when the first measurement started (the rate leaves out the workers' start-up)
        self.first_start: float | None = None
        #: rows done when the first measurement started (rows resumed from a journal are not this run's rate)
        self._done_at_first_start = 0
        self._methods: dict[str, list[str]] = {}  # case -> the methods it has started, in order
        self._timing: set[str] = set()  # cases whose interleaved timing has begun
        self.now_running = ""
        self.stream = stream or sys.stderr
        self.live = sys.stdout.isatty() if live is None else live
        self._bar: Any = None
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[counts]}"),
                                 TextColumn("{task.description}"), transient=False)
            self._task = self._bar.add_task("", total=self.total, counts="", eta=format_eta(None))
            self._bar.start()

    # ------------------------------------------------------------------ events
    def started(self, key: Sequence[Any]) -> None:
        """A measurement started: ``key`` is (case, method, variant, dtype, device, order). Prints a line when a case
        starts and when it moves on to another method."""
        if self.first_start is None:
            self.first_start = self.clock()
            self._done_at_first_start = self.done
        name, method = str(key[0]), str(key[1])
        variant = str(key[2]) if len(key) > 2 and key[2] else ""
        self.now_running = f"{name}: {method}{'/' + variant if variant else ''}"
        if name not in self._methods:
            self.cases_started += 1
            planned = self.planned.get(name)
            self._say(f"[start {self.cases_started}/{self.cases_total}] {name}"
                      + (f" ({planned} rows planned)" if planned is not None else ""))
        seen = self._methods.setdefault(name, [])
        if method not in seen:
            seen.append(method)
            self._say(f"  {name}: {_doing(method)}")
        elif method != seen[-1] and name not in self._timing:
            # a method seen before starts again: the gradients are now timed, round-robin
            self._timing.add(name)
            self._say(f"  {name}: timing the prepared gradients, interleaved…")
        self._refresh()

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
        self._methods.pop(name, None)
        self._timing.discard(name)
        self._refresh()
        eta = self.eta()
        self._say(f"[{self.cases_done}/{self.cases_total}] {name}: {self.done}/{self.total} rows "
                  f"({_counts_text(self.counts) or 'none yet'}) {self.clock() - self.began:.0f} s"
                  + (f", {format_eta(eta)}" if eta is not None and self.done < self.total else ""))

    # ------------------------------------------------------------------ estimates
    def eta(self) -> float | None:
        """Seconds left at the measured rate: rows done per second since the first measurement started. None
        until a case has finished (no rate measured yet) or when nothing is left."""
        if self.first_start is None or not self.cases_done or self.done >= self.total:
            return None
        measured = self.done - self._done_at_first_start
        spent = self.clock() - self.first_start
        if measured <= 0 or spent <= 0:
            return None
        return (self.total - self.done) * spent / measured

    # ------------------------------------------------------------------ output
    def _say(self, line: str) -> None:
        if self.live:
            if self._bar is not None:
                self._bar.console.print(line, markup=False, highlight=False)
            return
        print(line, file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._bar is not None:
            self.total = max(self.total, self.done)
            self._bar.update(self._task, completed=self.done, total=self.total, counts=_counts_text(self.counts),
                             eta=format_eta(self.eta()) if self.done < self.total else "",
                             description=self.now_running)

    def close(self) -> None:
        """Stop the live bar (leaving its last state on screen)."""
        if self._bar is not None:
            self._refresh()
            self._bar.stop()
            self._bar = None


def _doing(method: str) -> str:
    if method == "reference":
        return "the certified reference…"
    if method == SWEEP:
        return "the finite-difference step sweep…"
    return f"{method}…"
