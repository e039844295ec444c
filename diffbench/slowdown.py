"""When is a row slower? Flag on the run's times, then confirm against an interleaved twin.

A run's samples on a shared machine are not independent: a burst of load hits several
samples of one row in a row, so a test on them (five samples against five) calls noise
significant. ``check --fail-slower`` therefore decides in two steps:

1. **Flag.** Rows whose median or minimum time (``STAT``) in the run grew by more than the
   threshold, or whose fastest time in the run exceeds the baseline's fastest CPU time by more
   than the threshold, are candidates (:meth:`SlowerCheck.flag`). The run's five wall-clock
   samples are too noisy to decide anything on a loaded machine, so flagging is generous: it
   only chooses what to measure again, and never fails a check by itself.
2. **Confirm.** Each candidate's gradient is timed again in a fresh worker process,
   alternating sample by sample with a fixed *twin* workload (:func:`twin_workload`, NumPy
   and Python work of ~20 µs), in the process's CPU time (:func:`paired_rounds`). A
   *session*'s statistic is the ratio of the fastest samples, gradient over twin
   (:func:`session_ratio`). The snapshot took :data:`SESSIONS` sessions of every row, a
   pass over all rows apart, and the ratio moves between sessions by more than within one
   (under a load of 8 on 2 CPUs, by more than 20% on a third of the rows). A session *votes*
   (:meth:`SlowerCheck.vote`) against the baseline's slowest session: ``slower`` when it
   exceeds it by more than the limit times the baseline's own spread between its sessions,
   ``within`` when it exceeds it by at most the limit, otherwise ``unclear``. The row is
   slower when every one of :data:`SESSIONS` sessions votes so; within when the first
   session does, or two do; otherwise the machine was too noisy to tell, and ``check`` says
   so (exit 2) rather than guess (:meth:`SlowerCheck.verdict`).

A session's votes need no independence between the samples of a session, nor any
distribution: a false alarm needs every session now to land above the highest of the
baseline's sessions by more than their own spread and the threshold together.

The Mann-Whitney U test (for ``compare`` of two runs) stays here as well, implemented
without SciPy: the exact distribution for small samples without ties, the normal
approximation otherwise.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

#: significance level of the Mann-Whitney test of ``compare``
DEFAULT_ALPHA = 0.01
#: up to this many (n_baseline * n_current) pairs the exact U distribution is used
EXACT_MAX_PAIRS = 400
#: the twin workload's name, stored in a baseline; a baseline made against another twin is not compared
TWIN = "numpy-exp-sum-2000+python-sum-300"
#: rounds of (gradient, twin) samples in one session
PAIRED_ROUNDS = 41
#: sessions per row: all of them at snapshot, up to this many at check
SESSIONS = 3
#: each sample runs its function this long at least (loops doubled until it does)
PAIRED_SAMPLE_S = 0.001
#: a session's statistic compares this quantile of the gradient's and the twin's per-call times (0: the fastest)
QUANTILE = 0.0


@dataclass(frozen=True)
class Candidate:
    """A row the run's times flag as possibly slower, and what flagged it (:meth:`SlowerCheck.flag`)."""

    statistic: str
    before_s: float
    after_s: float
    drift: float
    reason: str


@dataclass(frozen=True)
class Vote:
    """One session's vote on a flagged row (:meth:`SlowerCheck.vote`).

    ``estimate`` is the session's ratio gradient/twin (:func:`session_ratio`) over the
    baseline's highest session ratio; ``noise`` the baseline's highest over its lowest (how far
    the row strays between sessions of unchanged code); ``kind`` is ``slower``, ``within`` or
    ``unclear``; ``twin_s`` the twin's time in this session (the machine's speed).
    """

    kind: str
    estimate: float
    noise: float
    twin_s: float


@dataclass(frozen=True)
class Verdict:
    """What the sessions decided about a flagged row: ``slower``, ``within`` or ``undecided``, and why."""

    outcome: str
    votes: tuple[Vote, ...]
    limit: float
    baseline_sessions: int

    def describe(self) -> str:
        """One clause with every session's numbers."""
        noise = self.votes[0].noise if self.votes else math.nan
        kinds = ", ".join(f"×{v.estimate:.2f} ({v.kind})" for v in self.votes)
        twins = [v.twin_s for v in self.votes if v.twin_s > 0]
        spread = (f"; the twin's own time moved ×{max(twins) / min(twins):.2f} between sessions"
                  if len(twins) > 1 else "")
        return (f"CPU time relative to the twin workload, over the slowest of the baseline's {self.baseline_sessions} "
                f"sessions, in {len(self.votes)} sessions now: {kinds} (slower needs more than ×{self.limit:.2f} "
                f"times the baseline's own spread ×{noise:.2f} = ×{self.limit * noise:.2f} in every one of "
                f"{SESSIONS} sessions){spread}")


@dataclass(frozen=True)
class SlowerCheck:
    """``--fail-slower STAT:PERCENT``: which statistic flags, and how much slower is too slow."""

    statistic: str
    threshold: float

    @classmethod
    def parse(cls, spec: str) -> "SlowerCheck":
        """Parse ``median:20%`` or ``min:5%``; raises argparse.ArgumentTypeError otherwise (an argparse type=)."""
        match = re.fullmatch(r"(median|min):(\d+(?:\.\d+)?)%", spec.strip())
        if not match:
            raise argparse.ArgumentTypeError(f"takes STAT:PERCENT with STAT median or min, e.g. median:20%, "
                                             f"got {spec!r}")
        return cls(match.group(1), float(match.group(2)) / 100)

    @property
    def limit(self) -> float:
        """The largest ratio now/before that passes: 1 + threshold."""
        return 1 + self.threshold

    def flag(self, before: Sequence[float], after: Sequence[float], drifts: Sequence[float] = (1.0,),
             reference_s: float | None = None) -> Candidate | None:
        """A candidate when the run's samples ``after`` may be slower than the baseline's ``before``.

        Flagged when the statistic (median or min) of ``after`` exceeds the limit times that of
        ``before``, once the smallest of ``drifts`` (the machine's own change of speed,
        after/before) *below 1* is divided out: a machine that got faster hides nothing, and a
        machine that seems to have got slower (a load burst during one estimate) is never
        allowed to hide a slowdown. Also flagged when the fastest sample of ``after`` exceeds the
        limit times ``reference_s``, the gradient's fastest CPU time per call in the baseline's
        sessions: a wall-clock time is never below the CPU time of single-threaded work, so this
        holds for every real slowdown past the limit whatever load inflated the baseline's run.
        No significance is asked here: flagging only chooses what :meth:`vote` measures again.
        """
        pick = statistics.median if self.statistic == "median" else min
        old, new = float(pick(before)), float(pick(after))
        drift = min([1.0] + [d for d in drifts if d > 0 and math.isfinite(d)])
        if new / drift > old * self.limit:
            return Candidate(self.statistic, old, new / drift, drift,
                             f"{self.statistic} time {old:.3g} s -> {new / drift:.3g} s"
                             + (f" once the machine's speed-up ×{drift:.2f} is divided out" if drift < 1 else "")
                             + f" ({(new / drift / old - 1) * 100:.0f}% slower)")
        fastest = float(min(after))
        if reference_s and reference_s > 0 and fastest > reference_s * self.limit:
            return Candidate("min", reference_s, fastest, 1.0,
                             f"fastest time {fastest:.3g} s against the baseline's fastest CPU time "
                             f"{reference_s:.3g} s ({(fastest / reference_s - 1) * 100:.0f}% slower)")
        return None

    def vote(self, baseline: Sequence[tuple[Sequence[float], Sequence[float]]],
             session: tuple[Sequence[float], Sequence[float]]) -> Vote:
        """One session's vote: (gradient samples, twin samples) now against the baseline's sessions.

        The reference is the baseline's *highest* session ratio (its slowest moment), so that a
        slow moment of the snapshot's is never taken for the row's normal speed, and the margin
        is the baseline's own spread between its sessions. ``slower`` when the estimate exceeds
        the limit times that spread; ``within`` when it is at most the limit; ``unclear``
        otherwise (or when anything is missing).
        """
        references = [session_ratio(*b) for b in baseline]
        references = [r for r in references if r > 0 and math.isfinite(r)]
        now = session_ratio(*session)
        twin = quantile(session[1], QUANTILE) if session[1] else math.nan
        if not references or not (now > 0 and math.isfinite(now)):
            return Vote("unclear", math.nan, math.nan, twin)
        noise = max(references) / min(references)
        estimate = now / max(references)
        kind = "slower" if estimate > self.limit * noise else "within" if estimate <= self.limit else "unclear"
        return Vote(kind, estimate, noise, twin)

    def verdict(self, votes: Sequence[Vote], baseline_sessions: int = SESSIONS) -> Verdict | None:
        """The row's outcome from the sessions' votes so far, or None while another session is needed.

        ``within`` when the first session votes so, or two do; ``slower`` when every one of
        :data:`SESSIONS` sessions votes so; ``undecided`` after :data:`SESSIONS` sessions otherwise.
        """
        kinds = [v.kind for v in votes]
        if kinds[:1] == ["within"] or kinds.count("within") >= 2:
            outcome = "within"
        elif len(kinds) >= SESSIONS:
            outcome = "slower" if kinds.count("slower") == len(kinds) else "undecided"
        else:
            return None
        return Verdict(outcome, tuple(votes), self.limit, baseline_sessions)

    def __str__(self) -> str:
        return f"{self.statistic}:{self.threshold * 100:g}%"


# --------------------------------------------------------------------------- a session's statistic
def quantile(values: Sequence[float], q: float) -> float:
    """The order statistic x_(floor(q·(n-1)) + 1) of ``values`` (the lower empirical quantile); nan when empty."""
    ordered = sorted(values)
    return ordered[int(math.floor(q * (len(ordered) - 1)))] if ordered else math.nan


def session_ratio(gradient_s: Sequence[float], twin_s: Sequence[float], q: float = QUANTILE) -> float:
    """A session's statistic: the ``q`` quantile of the gradient's times over the twin's (nan without twin times)."""
    twin = quantile(twin_s, q)
    return quantile(gradient_s, q) / twin if twin > 0 else math.nan


# --------------------------------------------------------------------------- the Mann-Whitney test
def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value of the Mann-Whitney U test that ``x`` tends to be larger than ``y``.

    Returns 1.0 when either sample is empty. Exact without ties for small samples;
    otherwise the normal approximation with tie and continuity corrections.
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return 1.0
    u = sum((xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y)
    pooled = list(x) + list(y)
    ties = len(set(pooled)) < len(pooled)
    if not ties and n * m <= EXACT_MAX_PAIRS:
        counts = _u_counts(n, m)
        total = math.comb(n + m, n)
        return sum(counts[int(u):]) / total
    ranks: dict[float, int] = {}
    for value in pooled:
        ranks[value] = ranks.get(value, 0) + 1
    tie_term = sum(t**3 - t for t in ranks.values())
    sigma = math.sqrt(n * m / 12 * ((n + m + 1) - tie_term / ((n + m) * (n + m - 1))))
    if sigma == 0:
        return 1.0
    z = (u - n * m / 2 - 0.5) / sigma
    return 0.5 * math.erfc(z / math.sqrt(2))


def _u_counts(n: int, m: int) -> list[int]:
    """How many of the C(n+m, n) orderings give each U = 0..n*m (no ties)."""
    # table[j][u]: orderings of i x-values and j y-values with statistic u, built row by row in i
    table = [[1] + [0] * (n * m) for _ in range(m + 1)]
    for _ in range(1, n + 1):
        new = [[0] * (n * m + 1) for _ in range(m + 1)]
        new[0][0] = 1
        for j in range(1, m + 1):
            for u in range(n * m + 1):
                # the largest value is an x (it beats all j y-values) or a y (it adds nothing)
                new[j][u] = (table[j][u - j] if u >= j else 0) + new[j - 1][u]
        table = new
    return table[m]


# --------------------------------------------------------------------------- the machine and the twin
#: with at least this many timed rows, one estimate of the machine's drift is their median ratio
MIN_ROWS_FOR_DRIFT = 3


def calibration_s(repeats: int = 15) -> float:
    """Median time of a fixed workload (NumPy arithmetic and a Python loop, ~2 ms): the machine's speed now."""
    import numpy as np

    a = np.linspace(0.0, 1.0, 40_000)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            np.sum(np.exp(a) * a)
        sum(i * i for i in range(20_000))
        samples.append(time.perf_counter() - start)
    return float(statistics.median(samples))


def machine_drift(ratios: Sequence[float], calibration_before: float | None, calibration_after: float | None
                  ) -> list[tuple[float, str]]:
    """How much slower the machine itself ran at check than at snapshot, by each estimate available.

    A shared machine's load moves every row alike; a code change moves some rows. With enough
    timed rows, their median ratio (after/before) is one estimate (blind to a change that slows
    most rows); the ratio of a fixed calibration workload's times is another (blind to load that
    came and went between it and the rows). [(1.0, "none")] when neither is available.
    """
    found = []
    usable = [r for r in ratios if r > 0 and math.isfinite(r)]
    if len(usable) >= MIN_ROWS_FOR_DRIFT:
        found.append((float(statistics.median(usable)), f"the median over {len(usable)} timed rows"))
    if calibration_before and calibration_after:
        found.append((calibration_after / calibration_before, "a calibration workload timed at snapshot and at check"))
    return found or [(1.0, "none (too few rows and no calibration in the baseline)")]


def twin_workload() -> Callable[[], Any]:
    """The fixed workload every gradient is interleaved with (:data:`TWIN`): NumPy on 2000 values and a
    Python loop, about 20 µs, a mix like the cases' own (array calls and interpreter overhead)."""
    import numpy as np

    values = np.linspace(0.0, 1.0, 2000)

    def twin() -> float:
        return float(np.sum(np.exp(values) * values)) + sum(i * i for i in range(300))

    return twin


def _loops_for(fn: Callable[[], Any], min_sample_s: float, clock: Callable[[], float]) -> int:
    start = clock()
    fn()
    first = clock() - start
    loops = 1
    while first * loops < min_sample_s and loops < 1 << 20:
        loops *= 2
    return loops


def _sample(fn: Callable[[], Any], loops: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(loops):
        fn()
    return (clock() - start) / loops


def paired_rounds(fn: Callable[[], Any], twin: Callable[[], Any], rounds: int = PAIRED_ROUNDS,
                  min_sample_s: float = PAIRED_SAMPLE_S, budget_s: float = math.inf,
                  clock: Callable[[], float] = time.process_time) -> tuple[list[float], list[float]]:
    """Time ``fn`` and ``twin`` alternately; return (fn's per-call samples, the twin's), one of each per round.

    Both are warmed up and calibrated (loops doubled until a sample lasts ``min_sample_s``);
    each round takes one sample of each, the order swapped every round so neither always runs
    first. Garbage collection is off while timing. Rounds stop early once ``budget_s`` of wall
    time is spent (a slow gradient then gets fewer rounds).

    The clock is the process's CPU time (every thread of it), not the wall clock: under a load
    of 8 on 2 CPUs most wall-clock samples of a millisecond are interrupted by other
    processes, and the ratio of the fastest samples moved by more than ×1.9 between sessions
    on one row in ten, against ×1.3 in CPU time. The price: a slowdown that shows only in wall
    time (waiting, sleeping, work moved off parallel threads) is not confirmed.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        fn(), twin()
        loops_fn, loops_twin = _loops_for(fn, min_sample_s, clock), _loops_for(twin, min_sample_s, clock)
        times, twins = [], []
        began = time.perf_counter()
        for r in range(rounds):
            if time.perf_counter() - began > budget_s:
                break
            if r % 2:
                t = _sample(twin, loops_twin, clock)
                g = _sample(fn, loops_fn, clock)
            else:
                g = _sample(fn, loops_fn, clock)
                t = _sample(twin, loops_twin, clock)
            times.append(g)
            twins.append(t)
    finally:
        if enabled:
            gc.enable()
    return times, twins


def machine_load() -> dict[str, Any]:
    """What the machine was doing and how it keeps time: load averages, CPUs, the paired timing's clock
    (:func:`paired_rounds`) and its resolution, the CPU frequency governor where Linux shows it."""
    clock = time.get_clock_info("process_time")
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    governor = None
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", encoding="ascii") as handle:
            governor = handle.read().strip()
    except OSError:
        pass
    return {"loadavg": load, "cpu_count": os.cpu_count(), "usable_cpus": usable, "clock": clock.implementation,
            "clock_resolution_s": clock.resolution, "governor": governor}


def describe_load(load: dict[str, Any] | None) -> str:
    """``load 3.1/2.5/1.9 on 2 CPUs, clock clock_gettime(CLOCK_MONOTONIC) (1e-09 s)`` from :func:`machine_load`."""
    if not load:
        return "load not recorded"
    averages = "/".join(f"{v:g}" for v in load.get("loadavg") or []) or "unknown"
    governor = f", governor {load['governor']}" if load.get("governor") else ""
    return (f"load {averages} on {load.get('usable_cpus') or load.get('cpu_count')} CPUs, clock {load.get('clock')} "
            f"({load.get('clock_resolution_s'):.0e} s){governor}")
