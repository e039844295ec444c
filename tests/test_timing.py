"""The timer's statistics, checked on samples whose summary is known by hand."""

import time

import pytest

from diffbench.timing import PROFILES, Profile, measure, summarise


def test_summary_of_known_samples():
    t = summarise([1.0, 2.0, 3.0, 4.0, 5.0], loops=1000)
    assert t.median_s == 3.0 and t.min_s == 1.0 and t.repeats == 5
    assert t.iqr_s == pytest.approx(4.5 - 1.5)  # quartiles (exclusive method) of 1..5 are 1.5 and 4.5
    assert t.unstable  # std 1.58 ≥ 10% of the mean 3


def test_stable_when_spread_is_small():
    t = summarise([1.00, 1.01, 0.99, 1.00, 1.00], loops=10)
    assert not t.unstable


def test_unstable_when_a_sample_is_under_a_millisecond():
    # pyperf's rule: a raw sample (loops × per-call time) under 1 ms is unreliable
    assert summarise([1e-7] * 5, loops=100).unstable
    assert not summarise([1e-7] * 5, loops=100_000).unstable


def test_measure_calibrates_loops_to_the_minimum_sample(monkeypatch):
    # a clock that advances 0.5 ms per call of the timed function: the calibration is then known by hand
    # (0.5 ms × 8 loops = 4 ms, the first power of two to fill a 4 ms sample) and no machine load can move it
    clock = [0.0]

    def tick():
        clock[0] += 0.0005

    monkeypatch.setattr("diffbench.timing.time.perf_counter", lambda: clock[0])
    profile = Profile("test", min_sample_s=0.004, samples=5, warmups=1, budget_s=1.0)
    t = measure(tick, profile)
    assert t.loops == 8 and t.repeats == 5
    assert t.median_s == pytest.approx(0.0005)


def test_measure_times_real_work_in_its_order_of_magnitude():
    t = measure(lambda: time.sleep(0.0005), Profile("test", min_sample_s=0.004, samples=5, warmups=1, budget_s=1.0))
    assert t.repeats >= 5 and t.median_s >= 0.0004  # sleep never returns early; load only makes it longer


def test_profiles_exist():
    assert set(PROFILES) == {"quick", "full"}
    assert PROFILES["full"].min_sample_s > PROFILES["quick"].min_sample_s
