"""A calibrated timer in the manner of pyperf and timeit.

One *sample* runs the callable ``loops`` times back to back and divides; ``loops`` is
doubled until a sample lasts at least ``min_sample_s``. Warm-up calls are discarded,
garbage collection is off while sampling, the clock is ``time.perf_counter``. The
callable itself must force completion of its work (the engines synchronise the
device inside it), so asynchronous GPU work is inside the timed region.

A measurement is flagged ``unstable`` by pyperf's rules: the standard deviation is at
least 10% of the mean, or a sample lasted less than 1 ms.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class Profile:
    """How hard to try: per-sample duration, number of samples, and a per-measurement budget."""

    name: str
    min_sample_s: float
    samples: int
    warmups: int
    budget_s: float


PROFILES = {
    "quick": Profile("quick", min_sample_s=0.002, samples=5, warmups=1, budget_s=0.05),
    "full": Profile("full", min_sample_s=0.010, samples=15, warmups=2, budget_s=3.0),
}
#: in the quick profile, a function one call of which takes longer than this many seconds is sampled
#: ``SLOW_SAMPLES`` times rather than at least 5 (an eager tape over a thousand unrolled steps: 40 s a call)
SLOW_CALL_S = 2.0
SLOW_SAMPLES = 3
#: ... and one longer than this is sampled once: its warm-up call is its time where that call is this slow (the
#: judged gradient already called it once), else its first call after the warm-up (the quick profile answers
#: "how slow", not a 5% difference; --profile full samples it as every other function)
VERY_SLOW_CALL_S = 10.0


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, interquartile range, min; how it was measured; the samples."""

    median_s: float
    iqr_s: float
    min_s: float
    repeats: int
    loops: int
    unstable: bool
    #: every sample's seconds per call, in the order taken (a baseline keeps them for a significance test)
    samples: tuple[float, ...] = ()

    def as_row(self, prefix: str = "time") -> dict[str, Any]:
        return {f"{prefix}_median_s": self.median_s, f"{prefix}_iqr_s": self.iqr_s, f"{prefix}_min_s": self.min_s,
                "repeats": self.repeats, "loops": self.loops, "unstable": self.unstable,
                f"{prefix}_samples_s": list(self.samples)}


def resolution() -> float:
    """The resolution of the clock used for timing, in seconds."""
    return time.get_clock_info("perf_counter").resolution


def _sample(fn: Callable[[], Any], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops


def measure(fn: Callable[[], Any], profile: Profile = PROFILES["quick"]) -> Timing:
    """Time ``fn`` (which must complete its work before returning) and summarise the samples.

    Calibration and sampling stop early when the profile's budget is spent, but at
    least 5 samples are always taken; the result records how many there were.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(profile.warmups):
            fn()
        began = time.perf_counter()
        first = _sample(fn, 1)
        # one call's time predicts how many calls fill a sample; round up to a power of two
        loops = 1
        while first * loops < profile.min_sample_s and loops < 1 << 20:
            loops *= 2
        samples = [first] if loops == 1 else []
        while len(samples) < profile.samples:
            samples.append(_sample(fn, loops))
            if len(samples) >= 5 and time.perf_counter() - began > profile.budget_s:
                break
    finally:
        if enabled:
            gc.enable()
    return summarise(samples, loops)


def measure_interleaved(fns: dict[Any, Callable[[], Any]], profile: Profile = PROFILES["quick"],
                        around: Callable[[Any], Any] | None = None) -> dict[Any, Timing]:
    """Time several functions with their samples interleaved, round-robin, so that a drift of the
    machine (another process, a frequency change) hits them alike and their ratios hold still.

    Each function is warmed up and calibrated (loops per sample) as :func:`measure` does; then each
    round takes one sample of every function, starting one further along each round so that no
    function always follows the same one. Rounds stop at the profile's sample count, or when
    the profile's budget times the number of functions is spent (at least 5 rounds are taken; in the quick
    profile, a function one call of which takes more than ``SLOW_CALL_S`` is sampled ``SLOW_SAMPLES`` times, and
    one that takes more than ``VERY_SLOW_CALL_S`` once: by its warm-up call where that one took so long, since
    the functions given here have been called before, when their gradients were judged).
    ``around(key)`` is entered around everything done for one function (a time budget, a
    progress event); whatever it or a function raises propagates with the key in ``exc.key``.
    """
    keys = list(fns)
    if not keys:
        return {}
    enter = around or (lambda key: contextlib.nullcontext())
    loops: dict[Any, int] = {}
    cap: dict[Any, int] = {}
    samples: dict[Any, list[float]] = {k: [] for k in keys}
    enabled = gc.isenabled()
    gc.disable()
    try:
        began = time.perf_counter()
        for key in keys:
            with _keyed(key), enter(key):
                warm = [_sample(fns[key], 1) for _ in range(profile.warmups)]
                if profile.name == "quick" and warm and warm[-1] > VERY_SLOW_CALL_S:
                    # its one sample is the warm-up call: a function is timed after its gradient was judged, so
                    # this is not its first call, and a second call of over 10 s would only repeat it
                    loops[key], cap[key] = 1, 1
                    samples[key].append(warm[-1])
                    continue
                first = _sample(fns[key], 1)
            n = 1
            while first * n < profile.min_sample_s and n < 1 << 20:
                n *= 2
            loops[key] = n
            cap[key] = profile.samples
            if profile.name == "quick" and first > SLOW_CALL_S:
                cap[key] = 1 if first > VERY_SLOW_CALL_S else SLOW_SAMPLES
            if cap[key] < profile.samples and n == 1:
                samples[key].append(first)  # a slow call is a sample in itself
        budget = profile.budget_s * len(keys)
        for r in range(profile.samples):
            for i in range(len(keys)):
                key = keys[(i + r) % len(keys)]
                if len(samples[key]) >= cap[key]:
                    continue
                with _keyed(key), enter(key):
                    samples[key].append(_sample(fns[key], loops[key]))
            if r + 1 >= 5 and time.perf_counter() - began > budget:
                break
    finally:
        if enabled:
            gc.enable()
    return {k: summarise(samples[k], loops[k]) for k in keys}


@contextlib.contextmanager
def _keyed(key: Any) -> Iterator[None]:
    """Attach ``key`` to an exception leaving the block (which of the interleaved functions raised)."""
    try:
        yield
    except BaseException as exc:
        if not hasattr(exc, "key"):
            with contextlib.suppress(Exception):
                exc.key = key  # type: ignore[attr-defined]
        raise


def paired_ratio(a: Timing, b: Timing) -> float:
    """The median over rounds of a's sample over b's sample of the same round (interleaved timings):
    the ratio drift cancels out of. NaN where either has no samples."""
    pairs = [x / y for x, y in zip(a.samples, b.samples) if y > 0]
    return statistics.median(pairs) if pairs else math.nan


def summarise(samples: list[float], loops: int) -> Timing:
    """Median, IQR, min and the unstable flag of per-call sample times."""
    ordered = sorted(samples)
    if len(ordered) >= 4:
        quartiles = statistics.quantiles(ordered, n=4)
        iqr = quartiles[2] - quartiles[0]
    else:
        iqr = ordered[-1] - ordered[0]
    mean = statistics.fmean(ordered)
    std = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
    unstable = (mean > 0 and std >= 0.1 * mean) or min(ordered) * loops < 1e-3
    return Timing(statistics.median(ordered), iqr, ordered[0], len(ordered), loops, unstable, tuple(samples))
