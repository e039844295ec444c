"""When is a row slower? A threshold on a statistic, and a significance test on the samples.

A speed regression is reported only when both hold, as pyperf ``compare_to`` and asv do:
the chosen statistic (median or minimum of the per-call sample times) grew by more than
the threshold, and a one-sided Mann-Whitney U test says the new samples are larger than
the baseline's with p below ``alpha``. The test is implemented here (exact distribution
for small samples without ties, normal approximation otherwise) so that the package
needs no SciPy.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from dataclasses import dataclass
from typing import Sequence

#: significance level of the one-sided test; 5 samples against 5 can reach p = 1/252
DEFAULT_ALPHA = 0.01
#: up to this many (n_baseline * n_current) pairs the exact U distribution is used
EXACT_MAX_PAIRS = 400


@dataclass(frozen=True)
class Slowdown:
    """A significant slowdown: the statistic before and after, the ratio and the p-value."""

    statistic: str
    before_s: float
    after_s: float
    p_value: float

    @property
    def percent(self) -> float:
        """How much slower, in percent of the baseline's statistic."""
        return (self.after_s / self.before_s - 1) * 100 if self.before_s > 0 else math.inf


@dataclass(frozen=True)
class SlowerCheck:
    """``--fail-slower STAT:PERCENT``: which statistic, how much slower is too slow, at what significance."""

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

    def judge(self, before: Sequence[float], after: Sequence[float], drift: float = 1.0) -> Slowdown | None:
        """The slowdown from ``before`` to ``after`` samples if it is above the threshold and significant.

        ``after`` is divided by ``drift``, the machine's own change of speed between the two
        measurements (see :func:`machine_drift`), before anything is compared.
        """
        pick = statistics.median if self.statistic == "median" else min
        after = [a / drift for a in after]
        old, new = float(pick(before)), float(pick(after))
        if not new > old * (1 + self.threshold):
            return None
        p_value = mann_whitney_greater(after, before)
        return Slowdown(self.statistic, old, new, p_value) if p_value < self.alpha else None

    def __str__(self) -> str:
        return f"{self.statistic}:{self.threshold * 100:g}%"


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


#: with at least this many timed rows, the machine's drift is their median ratio; with fewer, a
#: calibration workload measured at snapshot and at check
MIN_ROWS_FOR_DRIFT = 3


def calibration_s(repeats: int = 15) -> float:
    """Median time of a fixed workload (NumPy arithmetic and a Python loop, ~2 ms): the machine's speed now."""
    import time

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
                  ) -> tuple[float, str]:
    """How much slower the machine itself ran at check than at snapshot, and how that was found.

    A shared machine's load moves every row alike; a code change moves some rows. With enough
    timed rows, their median ratio (after/before) is the machine's part; with fewer, the ratio of a
    fixed calibration workload's times. 1.0 when neither is available.
    """
    usable = [r for r in ratios if r > 0 and math.isfinite(r)]
    if len(usable) >= MIN_ROWS_FOR_DRIFT:
        return float(statistics.median(usable)), f"the median over {len(usable)} timed rows"
    if calibration_before and calibration_after:
        return calibration_after / calibration_before, "a calibration workload timed at snapshot and at check"
    return 1.0, "none (too few rows and no calibration in the baseline)"
