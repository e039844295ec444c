"""The timer's statistics, checked on samples whose summary is known by hand."""

import time

import pytest

from diffbench.timing import PROFILES, Profile, measure, measure_interleaved, paired_ratio, summarise


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


def test_interleaved_samples_rotate_round_robin(monkeypatch):
    # every call advances a fake clock by the function's own cost, so each sample is known by hand
    clock = [0.0]
    calls = []

    def work(name, cost):
        def run():
            calls.append(name)
            clock[0] += cost
        return run

    monkeypatch.setattr("diffbench.timing.time.perf_counter", lambda: clock[0])
    profile = Profile("test", min_sample_s=0.004, samples=6, warmups=0, budget_s=100.0)
    timings = measure_interleaved({"a": work("a", 0.001), "b": work("b", 0.002), "c": work("c", 0.004)}, profile)
    assert timings["a"].loops == 4 and timings["b"].loops == 2 and timings["c"].loops == 1
    assert timings["a"].median_s == pytest.approx(0.001) and timings["c"].median_s == pytest.approx(0.004)
    assert all(t.repeats == 6 for t in timings.values())
    # after calibration (one call each), round r starts at function r mod 3
    rounds, rest = [], calls[3:]
    for _ in range(6):
        first = rest[0]
        rounds.append(first)
        run = {"a": 4, "b": 2, "c": 1}
        order = ["a", "b", "c"]
        start = order.index(first)
        n = sum(run[order[(start + i) % 3]] for i in range(3))
        rest = rest[n:]
    assert rounds == ["a", "b", "c", "a", "b", "c"]
    assert paired_ratio(timings["c"], timings["a"]) == pytest.approx(4.0)


def test_paired_ratio_takes_the_median_of_per_round_ratios():
    # the machine slows by 2× from round 3 on: every per-round ratio is still 2
    a = summarise([2.0, 2.0, 4.0, 4.0, 4.0], loops=1)
    b = summarise([1.0, 1.0, 2.0, 2.0, 2.0], loops=1)
    assert paired_ratio(a, b) == 2.0
    c = summarise([3.0, 9.0, 1.0], loops=1)
    d = summarise([1.0, 1.0, 1.0], loops=1)
    assert paired_ratio(c, d) == 3.0  # median of 3, 9, 1


def test_interleaved_names_the_function_that_raised():
    def bad():
        raise ValueError("broken")

    with pytest.raises(ValueError) as info:
        measure_interleaved({"good": lambda: None, "bad": bad}, Profile("t", 0.0, 5, 0, 1.0))
    assert info.value.key == "bad"


def test_a_slow_function_is_sampled_three_times_in_quick_beside_fast_ones(monkeypatch):
    from diffbench import timing

    monkeypatch.setattr(timing, "SLOW_CALL_S", 0.02)
    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        time.sleep(0.03)

    def fast():
        calls["fast"] += 1

    result = measure_interleaved({"slow": slow, "fast": fast}, PROFILES["quick"])
    # the slow one: a warm-up, then its first call (a sample itself) and two more; the fast one keeps its five
    assert result["slow"].repeats == 3 and calls["slow"] == 4
    assert result["fast"].repeats >= 5
    assert result["slow"].median_s >= 0.03
    # the full profile samples every function as usual
    assert measure_interleaved({"slow": slow}, PROFILES["full"])["slow"].repeats >= 5


def test_a_very_slow_function_is_sampled_once_in_quick(monkeypatch):
    from diffbench import timing

    monkeypatch.setattr(timing, "SLOW_CALL_S", 0.005)
    monkeypatch.setattr(timing, "VERY_SLOW_CALL_S", 0.02)
    calls = {"very": 0, "slow": 0}

    def very():
        calls["very"] += 1
        time.sleep(0.03)

    def slow():
        calls["slow"] += 1
        time.sleep(0.01)

    result = measure_interleaved({"very": very, "slow": slow}, PROFILES["quick"])
    # past VERY_SLOW_CALL_S: one call, the warm-up, which is the sample; between the two limits: three samples
    assert result["very"].repeats == 1 and calls["very"] == 1 and result["very"].median_s >= 0.03
    assert result["slow"].repeats == 3 and calls["slow"] == 4
    assert measure_interleaved({"very": very}, PROFILES["full"])["very"].repeats >= 5
