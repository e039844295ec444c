"""What a run shows while it measures: a line as each case and method starts, an ETA from measured rates."""

from __future__ import annotations

import io
import subprocess
import sys

from conftest import ROOT

from diffbench.progress import RunProgress, format_eta


class Clock:
    """A hand-driven clock, so rates and ETAs are known exactly."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _key(case, method, variant="", dtype="float64"):
    return (case, method, variant, dtype, "CPU", 1)


def test_each_case_and_method_prints_a_line_as_it_starts_before_any_row():
    stream, clock = io.StringIO(), Clock()
    bar = RunProgress({"a": 4, "b": 4}, live=False, stream=stream, clock=clock)
    bar.started(_key("a", "reference"))
    bar.started(_key("a", "symbolic", "numpy"))
    bar.started(_key("a", "symbolic", "symengine"))  # another variant of the same method: no new line
    bar.started(_key("a", "tape", "eager"))
    bar.started(_key("a", "symbolic", "numpy"))  # seen before: the interleaved timing has begun
    bar.started(_key("a", "tape", "eager"))  # and goes round: said once
    assert bar.done == 0
    assert stream.getvalue().splitlines() == [
        "[start 1/2] a (4 rows planned)", "  a: the certified reference…", "  a: symbolic…", "  a: tape…",
        "  a: timing the prepared gradients, interleaved…"]


def test_eta_comes_from_the_measured_rate_after_the_first_case():
    stream, clock = io.StringIO(), Clock()
    bar = RunProgress({"a": 4, "b": 4, "c": 2}, live=False, stream=stream, clock=clock)
    clock.t += 50.0  # worker start-up: not part of any rate
    assert bar.eta() is None
    bar.started(_key("a", "reference"))
    clock.t += 20.0
    bar.rows([{"case": "a", "method": "tape", "status": "ok"}] * 4)
    assert bar.eta() is None  # no case finished: no rate yet, no guess
    bar.case_done("a")
    # 4 rows in the 20 s since the first measurement started: 5 s per row, 6 rows left -> 30 s
    assert bar.eta() == 30.0
    assert stream.getvalue().splitlines()[-1] == "[1/3] a: 4/10 rows (ok 4) 70 s, ETA 30 s"
    bar.started(_key("b", "reference"))
    clock.t += 60.0
    bar.rows([{"case": "b", "method": "tape", "status": "ok"}] * 4)
    bar.case_done("b")
    # 8 rows in 80 s: 10 s per row, 2 rows left -> 20 s
    assert bar.eta() == 20.0
    assert format_eta(20.0) == "ETA 20 s" and format_eta(600.0) == "ETA 10 min"
    bar.close()


def test_a_run_prints_its_case_start_before_the_case_ends(tmp_path):
    out = subprocess.run([sys.executable, "-m", "diffbench", "run", "--cases", str(ROOT / "cases" / "seeds.py"), "-k",
                          "quadratic", "--methods", "symbolic,finite", "--dtypes", "float64", "--no-order2",
                          "--no-scale", "--jobs", "1", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    start = lines.index("[start 1/1] quadratic (8 rows planned)")
    # symbolic: numpy, numpy-nocse, tensorflow, symengine; finite: 4 variants; the 5 planned rows are
    # corrected when the case ends if the plan differs, so only the order of the lines is asserted
    methods = [i for i, line in enumerate(lines) if line.startswith("  quadratic: ")]
    done = next(i for i, line in enumerate(lines) if line.startswith("[1/1] quadratic: "))
    assert start < min(methods) and max(methods) < done
    assert "  quadratic: symbolic…" in lines and "  quadratic: finite…" in lines
