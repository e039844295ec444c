"""When is a row slower? Flag on the run's times, then confirm against an interleaved twin.

A run's samples on a shared machine are not independent: a burst of load hits several
samples of one row in a row, so a test on them (five samples against five) calls noise
significant. ``check --fail-slower`` therefore decides in two steps:

1. **Flag.** Rows whose statistic (median or minimum of the run's samples) grew by more than
   the threshold once the machine's own drift is divided out (:func:`machine_drift`; of
   its estimates the smallest is divided out, so that either can flag) are candidates.
   Flagging only chooses what to measure again; it never fails a check by itself.
2. **Confirm.** Each candidate's gradient is timed again, alternating sample by sample with
   a fixed *twin* workload (:func:`twin_workload`, NumPy and Python work of ~20 µs), for
   many rounds (:func:`paired_rounds`), in the process's CPU time. A burst of load lands on
   both halves of a round, so the per-round ratio gradient/twin holds still where the times
   do not. The snapshot
   measured the same ratio the same way. The slowdown is the ratio of the two medians, and
   its interval comes from the distribution-free order-statistic interval of each median
   (the sign test inverted: no assumption of independent or normal samples within a row
   beyond exchangeable rounds). The row is slower only when the whole interval lies above
   1 + threshold; within the limit when the whole interval lies at or below it; otherwise
   the machine was too noisy to tell, and ``check`` says so (exit 2) rather than guess.

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

#: significance level: the slowdown's interval has confidence 1 - alpha
DEFAULT_ALPHA = 0.01
#: up to this many (n_baseline * n_current) pairs the exact U distribution is used
EXACT_MAX_PAIRS = 400
#: the twin workload's name, stored in a baseline; a baseline made against another twin is not compared
TWIN = "numpy-exp-sum-2000+python-sum-300"
#: rounds of (gradient, twin) samples taken at snapshot and at the first confirmation of a check
PAIRED_ROUNDS = 41
#: rounds added when the first confirmation cannot tell (the interval straddles the limit)
EXTRA_ROUNDS = 80
#: each sample runs its function this long at least (loops doubled until it does)
PAIRED_SAMPLE_S = 0.001


@dataclass(frozen=True)
class Candidate:
    """A row the run's times flag as slower: the statistic before and after (drift divided out)."""

    statistic: str
    before_s: float
    after_s: float
    drift: float

    @property
    def percent(self) -> float:
        """How much slower, in percent of the baseline's statistic."""
        return (self.after_s / self.before_s - 1) * 100 if self.before_s > 0 else math.inf


@dataclass(frozen=True)
class Confirmation:
    """The verdict of a re-measurement against the twin.

    ``estimate`` is how many times slower the row is now, relative to the twin workload, than
    in the baseline (Hodges-Lehmann estimate); ``low``/``high`` bound it with confidence
    1 - alpha (:func:`ratio_interval`); ``outcome`` is ``slower`` (``low`` above the limit),
    ``within`` (``high`` at or below it) or ``undecided``. ``twin_spread`` is the twin's own
    interquartile range over its median in the re-measurement (how noisy the machine was).
    """

    outcome: str
    estimate: float
    low: float
    high: float
    limit: float
    rounds: int
    baseline_rounds: int
    confidence: float
    twin_spread: float

    def describe(self) -> str:
        """One clause with the numbers behind the verdict."""
        return (f"×{self.estimate:.2f} the baseline's time relative to the twin workload ({self.confidence:.0%} "
                f"interval ×{self.low:.2f}–×{self.high:.2f}, limit ×{self.limit:.2f}; {self.rounds} interleaved "
                f"rounds now, {self.baseline_rounds} in the baseline; the twin's own spread "
                f"{self.twin_spread:.0%})")


@dataclass(frozen=True)
class SlowerCheck:
    """``--fail-slower STAT:PERCENT``: which statistic flags, how much slower is too slow, at what level."""

    statistic: str
    threshold: float
    alpha: float = DEFAULT_ALPHA

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

    def flag(self, before: Sequence[float], after: Sequence[float], drifts: Sequence[float] = (1.0,)
             ) -> Candidate | None:
        """A candidate when the statistic of ``after`` over ``before`` exceeds the limit for any of ``drifts``.

        Each drift is the machine's own change of speed (after/before); the smallest one is
        divided out, so that a slowdown one estimate of the machine would hide is still
        measured again. No significance is asked here: :meth:`confirm` decides.
        """
        pick = statistics.median if self.statistic == "median" else min
        old, new = float(pick(before)), float(pick(after))
        usable = [d for d in drifts if d > 0 and math.isfinite(d)] or [1.0]
        drift = min(usable)
        if not new / drift > old * self.limit:
            return None
        return Candidate(self.statistic, old, new / drift, drift)

    def confirm(self, before: Sequence[float], after: Sequence[float], twin_samples: Sequence[float] = ()
                ) -> Confirmation:
        """Judge per-round ratios gradient/twin: ``before`` from the baseline, ``after`` measured now.

        ``slower`` when the lower end of the interval of after/before (:func:`ratio_interval`)
        exceeds the limit, ``within`` when its upper end does not, ``undecided`` otherwise
        (also when there are too few rounds to bound it at this level).
        """
        estimate, low, high = ratio_interval(before, after, 1 - self.alpha)
        if low > self.limit:
            outcome = "slower"
        elif high <= self.limit:
            outcome = "within"
        else:
            outcome = "undecided"
        ordered = sorted(twin_samples)
        spread = math.nan
        if len(ordered) >= 4 and statistics.median(ordered) > 0:
            quartiles = statistics.quantiles(ordered, n=4)
            spread = (quartiles[2] - quartiles[0]) / statistics.median(ordered)
        return Confirmation(outcome, estimate, low, high, self.limit, len(after), len(before), 1 - self.alpha,
                            spread)

    def __str__(self) -> str:
        return f"{self.statistic}:{self.threshold * 100:g}%"


# --------------------------------------------------------------------------- distribution-free statistics
def ratio_interval(before: Sequence[float], after: Sequence[float], confidence: float = 1 - DEFAULT_ALPHA
                   ) -> tuple[float, float, float]:
    """How many times larger ``after`` is than ``before``: (estimate, low, high), from positive samples.

    On logarithms, the Hodges-Lehmann estimate of the shift between the two samples (the median
    of all n·m differences log a - log b) and its distribution-free confidence interval, the
    k-th smallest and k-th largest difference, where k is the largest with P(U <= k-1) <=
    (1 - confidence)/2 for the Mann-Whitney U under no shift (exact for small samples, the
    normal approximation otherwise; Hollander & Wolfe, *Nonparametric Statistical Methods*,
    §4.3). It assumes only that each sample's values are exchangeable and that the two differ
    by a shift; exponentiated, the three are ratios. (nan, 0, inf) when a sample is empty or has
    too few values to reach the confidence.
    """
    old = [math.log(v) for v in before if v > 0 and math.isfinite(v)]
    new = [math.log(v) for v in after if v > 0 and math.isfinite(v)]
    n, m = len(new), len(old)
    if not n or not m:
        return math.nan, 0.0, math.inf
    differences = sorted(a - b for a in new for b in old)
    estimate = math.exp(statistics.median(differences))
    k = _rank_for(n, m, (1 - confidence) / 2)
    if k < 1:
        return estimate, 0.0, math.inf
    return estimate, math.exp(differences[k - 1]), math.exp(differences[n * m - k])


def _rank_for(n: int, m: int, tail: float) -> int:
    """The largest k with P(U <= k-1) <= tail, U the Mann-Whitney statistic of samples of n and m."""
    if n * m <= EXACT_MAX_PAIRS:
        counts, total = _u_counts(n, m), math.comb(n + m, n)
        k, below = 0, 0
        while k < len(counts) and (below + counts[k]) / total <= tail:
            below += counts[k]
            k += 1
        return k
    z = statistics.NormalDist().inv_cdf(1 - tail)
    # the normal approximation's critical value, with the continuity correction
    return max(int(math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12) + 0.5)), 0)


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
    """Time ``fn`` and ``twin`` alternately; return (per-round ratios fn/twin, the twin's per-call samples).

    Both are warmed up and calibrated (loops doubled until a sample lasts ``min_sample_s``);
    each round takes one sample of each, the order swapped every round so neither always runs
    first. Garbage collection is off while timing. Rounds stop early once ``budget_s`` of wall
    time is spent (a slow gradient then gets fewer rounds, and a wider interval).

    The clock is the process's CPU time (``time.process_time``, every thread of the process),
    not the wall clock: on a shared machine a wall-clock sample of a millisecond includes
    whatever time other processes held the CPU, which made per-round ratios scatter over a
    factor of 5 under a load of 5 on 2 CPUs, against ±7% in CPU time. The price: a slowdown
    that shows only in wall time (waiting, sleeping, work moved off parallel threads) is not
    confirmed.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        fn(), twin()
        loops_fn, loops_twin = _loops_for(fn, min_sample_s, clock), _loops_for(twin, min_sample_s, clock)
        ratios, twins = [], []
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
            if t > 0:
                ratios.append(g / t)
                twins.append(t)
    finally:
        if enabled:
            gc.enable()
    return ratios, twins


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
