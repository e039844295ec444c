"""What a run promises about isolation, with real worker processes, signals and files:
no case changes another's rows (global switches), no method sees another's changed inputs,
a dying or hanging unit loses no row measured before it and is charged alone, each way a
worker can die reads as what it was, no process a case starts outlives the run, and the
memory budget turns an allocation past it into a row.

Every expected value is known without diffbench: gradients of sum(x²) (2x), exit codes,
signal names, which processes exist.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def diffbench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "diffbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def rows_of(out):
    df = pd.read_csv(Path(out) / "results.csv")
    return df[df.method != "sweep"]


def one(df, **where):
    for column, value in where.items():
        df = df[df[column] == value]
    assert len(df) == 1, f"expected one row for {where}, got {len(df)}"
    return df.iloc[0]


# -- inputs changed in place -------------------------------------------------------------------

MUTATES = '''
from diffbench import case


@case(inputs={"x": [1.0, 2.0, 3.0]})
def mutates(x, xp):
    y = xp.sum(x * x)
    x *= 3.0
    return y
'''


def test_a_function_that_changes_its_input_is_a_case_finding_not_an_inaccurate_method(tmp_path):
    from diffbench import load_cases, run

    path = tmp_path / "mutates.py"
    path.write_text(MUTATES)
    case = load_cases(path)[0]
    df = run([case], methods=["finite"], dtypes=["float64"], order2=False, timing=False)
    note = one(df, method="case")
    assert note["cause"] == "mutates-input"
    assert "modifies its input x in place" in note["diagnosis"]
    # every finite variant sees an unchanged point: d/dx sum(x²) = 2x = [2, 4, 6]
    finite = df[df.method == "finite"]
    assert set(finite.status) == {"ok"}, finite[["variant", "status", "diagnosis"]]
    assert (finite.rel_error < 1e-6).all()
    # the case's own inputs are untouched
    np.testing.assert_array_equal(case.inputs["x"], [1.0, 2.0, 3.0])


def test_finite_differences_read_the_step_from_the_point_they_evaluated():
    from diffbench.case import make_case
    from diffbench.engines import get_engine

    def f(x, xp):
        y = xp.sum(x * x)
        x *= 3.0
        return y

    case = make_case(f, {"x": [1.0, 2.0, 3.0]}, name="mutates_in_process")
    prepared = get_engine("finite").prepare(case, "central", "float64")
    np.testing.assert_allclose(prepared.gradient()["x"], [2.0, 4.0, 6.0], rtol=1e-8)


def test_a_function_that_leaves_its_input_alone_gets_no_finding():
    from diffbench.case import make_case
    from diffbench.isolation import mutated_inputs

    assert mutated_inputs(make_case(lambda x, xp: xp.sum(x * x), {"x": [1.0, 2.0]}, name="clean")) == []


# -- global switches ------------------------------------------------------------------------------

def test_restore_puts_back_every_numpy_switch_and_names_it(tmp_path):
    from diffbench import isolation

    here = os.getcwd()
    baseline = isolation.capture()
    old = np.geterr()
    try:
        np.seterr(all="raise")
        os.chdir(tmp_path)
        np.random.seed(1234)
        changed = isolation.restore(baseline)
    finally:
        os.chdir(here)
        np.seterr(**old)
    assert os.getcwd() == here
    assert np.geterr() == old
    assert any("np.seterr" in name for name in changed)
    assert any("working directory" in name for name in changed)
    assert any("np.random" in name for name in changed)
    assert isolation.restore(baseline) == []


def test_restore_puts_back_tensorflow_switches():
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.eager import context

    from diffbench import isolation

    baseline = isolation.capture()
    eager, soft, seed = tf.config.functions_run_eagerly(), tf.config.get_soft_device_placement(), context.global_seed()
    tf.debugging.enable_check_numerics()
    tf.config.run_functions_eagerly(not eager)
    tf.config.set_soft_device_placement(not soft)
    tf.random.set_seed(1234)
    changed = isolation.restore(baseline)
    assert tf.config.functions_run_eagerly() == eager
    assert tf.config.get_soft_device_placement() == soft
    assert context.global_seed() == seed
    # check_numerics off again: an overflow to inf is a value, not an error
    assert np.isinf(tf.exp(tf.constant(1000.0, tf.float64)).numpy())
    for text in ("check_numerics", "run_functions_eagerly", "soft device placement", "random seed"):
        assert any(text in name for name in changed), text
    assert isolation.restore(baseline) == []


LEAKY = '''
import os

import numpy as np

from diffbench import case


@case(inputs={"x": [1.0, 2.0]})
def a_leaky(x, xp):
    import tensorflow as tf

    tf.debugging.enable_check_numerics()
    tf.config.run_functions_eagerly(True)
    np.seterr(all="raise")
    os.chdir("/")
    return xp.sum(x * x)


@case(inputs={"x": [1.0, 2.0]})
def b_innocent(x, xp):
    # an overflowing intermediate the result does not use: harmless, unless check_numerics is on
    unused = xp.exp(1000.0 * x)
    return xp.sum(x * x)
'''


@pytest.mark.slow
def test_a_case_that_flips_global_switches_does_not_change_the_next_case_in_its_worker(tmp_path):
    cases = tmp_path / "leaky.py"
    cases.write_text(LEAKY)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "tape,finite", "--variants", "tape=eager,function",
                       "--variants", "finite=central", "--dtypes", "float64", "--no-order2", "--jobs", 1,
                       "--out", out)
    assert result.returncode == 0, result.stderr
    df = rows_of(out)
    innocent = df[df.case == "b_innocent"]
    # d/dx sum(x²) at [1, 2] is [2, 4], finite: every row is ok, as it is when b_innocent runs alone
    assert set(innocent.status) == {"ok"}, innocent[["method", "variant", "status", "diagnosis"]]
    assert not innocent.diagnosis.fillna("").str.contains("process-wide").any()
    leaky = df[(df.case == "a_leaky") & (df.method != "case")]
    for text in ("check_numerics", "np.seterr", "working directory", "run_functions_eagerly"):
        assert leaky.diagnosis.str.contains(text, regex=False).all(), text


# -- rows kept, timeouts charged to one variant ---------------------------------------------------

# the complex step evaluates f at complex points, central differences at real ones: only the
# complex step hangs
HANGS_COMPLEX = '''
import time

import numpy as np

from diffbench import case


@case(inputs={"x": [1.0, 2.0]})
def hangs_complex(x, xp):
    if isinstance(x, np.ndarray) and x.dtype.kind == "c":
        time.sleep(600)
    return xp.sum(x * x)
'''


@pytest.mark.slow
def test_a_timeout_keeps_the_rows_measured_before_it_and_charges_only_its_variant(tmp_path):
    cases = tmp_path / "hangs.py"
    cases.write_text(HANGS_COMPLEX)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "finite", "--variants", "finite=central,complex_step",
                       "--dtypes", "float32,float64", "--no-order2", "--jobs", 1, "--timeout", 3, "--out", out)
    assert result.returncode == 0, result.stderr
    df = rows_of(out)
    # measured before the float32 complex step hung: kept, with its accuracy (gradient [2, 4]), and timed
    # by the fresh worker
    kept = one(df, variant="central", dtype="float32")
    assert kept.status == "ok"
    assert kept.time_median_s > 0
    assert "not measured" not in str(kept.diagnosis)
    # measured afresh after it: the timeout was charged to the complex step alone
    fresh = one(df, variant="central", dtype="float64")
    assert fresh.status == "ok"
    assert fresh.time_median_s > 0
    assert set(df[df.variant == "complex_step"].status) == {"timeout"}


# the reference evaluates the case on its tape (arrays that are not NumPy's): each of its high-precision
# gradients there sleeps, so forming the certified Hessian would take 2·20 + 2 of them, ≥ 8.4 s
SLOW_REFERENCE = '''
import time

import numpy as np

from diffbench import case


@case(inputs={"x": np.linspace(0.5, 1.5, 20)})
def slow_reference(x, xp):
    if type(x) is not np.ndarray:  # the reference's tape array (a subclass)
        time.sleep(0.2)
    return xp.sum(x * x * x)
'''

# the reference's tape evaluations inside the Hessian's differences (not the reference gradient, not the one
# gradient the Hessian's cost is predicted from) hang, once: a fresh worker that formed the Hessian again would
# succeed, so a skipped second-order row shows that the stopped worker's outcome was handed on
HANGING_HESSIAN = '''
import os
import sys
import time

import numpy as np

from diffbench import case

MARK = os.path.join(os.path.dirname(__file__), "hung")


def _in_hessian_differences():
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "_hessian_at":
            return True
        frame = frame.f_back
    return False


@case(inputs={"x": [0.5, 1.0, 1.5]})
def hanging_hessian(x, xp):
    if type(x) is not np.ndarray and _in_hessian_differences() and not os.path.exists(MARK):
        open(MARK, "w").close()
        time.sleep(600)
    return xp.sum(x * x * x)
'''


@pytest.mark.slow
@pytest.mark.parametrize("source, name, reason", [
    (SLOW_REFERENCE, "slow_reference", "42 gradients in high precision"),
    (HANGING_HESSIAN, "hanging_hessian", "ran past --timeout 5 s and was stopped")])
def test_the_reference_hessians_cost_is_never_a_methods_timeout(tmp_path, source, name, reason):
    cases = tmp_path / "slow.py"
    cases.write_text(source)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "finite", "--variants", "finite=central",
                       "--dtypes", "float64", "--jobs", 1, "--timeout", 5, "--out", out)
    assert result.returncode == 0, result.stderr
    df = rows_of(out)
    assert "timeout" not in set(df.status), df[["variant", "order", "status", "diagnosis"]]
    # the gradient 3x² is judged and timed; the Hessian (diag 6x) is measured, its accuracy not checked
    first = one(df, order=1)
    assert first.status == "ok" and first.time_median_s > 0
    second = one(df, order=2)
    assert second.status == "skipped" and second.cause == "no-reference", second.diagnosis
    assert "no reference Hessian" in second.diagnosis and reason in second.diagnosis
    # a stopped worker's fresh successor does not form the Hessian again (it would hang again)
    assert result.stderr.count("continuing with a fresh worker") == (1 if name == "hanging_hessian" else 0)


# the complex step crashes the worker (as native code would): the method's other variants are not run again
CRASHES_COMPLEX = '''
import os
import signal

import numpy as np

from diffbench import case


@case(inputs={"x": [1.0, 2.0]})
def crashes_complex(x, xp):
    if isinstance(x, np.ndarray) and x.dtype.kind == "c":
        os.kill(os.getpid(), signal.SIGKILL)
    return xp.sum(x * x)
'''


@pytest.mark.slow
def test_a_crash_keeps_the_judged_rows_of_its_method_untimed_and_runs_no_more_of_it(tmp_path):
    cases = tmp_path / "crashes.py"
    cases.write_text(CRASHES_COMPLEX)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "finite", "--variants", "finite=central,complex_step",
                       "--dtypes", "float32,float64", "--no-order2", "--jobs", 1, "--out", out)
    df = rows_of(out)
    # judged before the crash (gradient [2, 4]): kept with its verdict; its time could not be taken, since
    # measuring it again in a fresh worker would run the method that crashed
    kept = one(df, variant="central", dtype="float32")
    assert kept.status == "ok", kept.diagnosis
    assert "not measured" in kept.diagnosis
    assert one(df, variant="complex_step", dtype="float32").status == "error"
    assert "not run" in one(df, variant="central", dtype="float64").diagnosis
    assert len(df[df.case == "crashes_complex"]) == 4, df[["variant", "dtype", "status"]]


# -- how workers die ------------------------------------------------------------------------------

DEATHS = '''
import os
import signal
import sys

from diffbench import case


@case(inputs={"x": [1.0, 2.0]})
def calls_sys_exit(x, xp):
    sys.exit(3)


@case(inputs={"x": [1.0, 2.0]})
def calls_os_exit(x, xp):
    os._exit(7)


@case(inputs={"x": [1.0, 2.0]})
def is_killed(x, xp):
    os.kill(os.getpid(), signal.SIGKILL)


@case(inputs={"x": [1.0, 2.0]})
def fine(x, xp):
    return xp.sum(x * x)
'''


@pytest.mark.slow
def test_each_way_a_worker_ends_reads_as_what_it_was(tmp_path):
    cases = tmp_path / "deaths.py"
    cases.write_text(DEATHS)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "finite,symbolic", "--variants", "finite=central",
                       "--dtypes", "float64", "--no-order2", "--jobs", 1, "--out", out)
    assert result.returncode == 4, result.stderr  # cases with no measured row (README: exit codes)
    df = rows_of(out)
    measured = df[df.method != "case"]
    sys_exit = measured[measured.case == "calls_sys_exit"]
    assert set(sys_exit.status) == {"error"}
    assert sys_exit.diagnosis.str.contains("SystemExit").all()
    assert not sys_exit.diagnosis.str.contains("--timeout").any()
    os_exit = measured[measured.case == "calls_os_exit"]
    assert set(os_exit.status) == {"error"}
    assert os_exit.diagnosis.str.contains("exit code 7").all()
    killed = measured[measured.case == "is_killed"]
    assert set(killed.status) == {"error"}
    assert killed.diagnosis.str.contains("SIGKILL").all()
    assert not df.diagnosis.fillna("").str.contains("--timeout").any()
    assert set(measured[measured.case == "fine"].status) == {"ok"}
    # the case ended its worker, not a method: one fresh worker for the case, not one per method
    assert result.stderr.count("'calls_os_exit'") == 1, result.stderr
    assert result.stderr.count("'is_killed'") == 1, result.stderr


# -- orphans --------------------------------------------------------------------------------------

ORPHAN = '''
import subprocess
from pathlib import Path

from diffbench import case

PIDS = Path(__file__).with_suffix(".pids")


@case(inputs={"x": 3.0})
def starts_a_child(x, xp):
    if not PIDS.exists():
        # not holding the run's output pipes, which would keep the test waiting for it
        child = subprocess.Popen(["sleep", "240"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        PIDS.write_text(str(child.pid))
    return x**2
'''


def _running(pid):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_child_process_a_case_starts_does_not_outlive_the_run(tmp_path):
    cases = tmp_path / "orphan.py"
    cases.write_text(ORPHAN)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "finite", "--variants", "finite=central",
                       "--dtypes", "float64", "--no-order2", "--jobs", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    pid = int(cases.with_suffix(".pids").read_text())
    deadline = time.time() + 30
    while _running(pid) and time.time() < deadline:
        time.sleep(0.2)
    running = _running(pid)
    if running:
        os.kill(pid, signal.SIGKILL)
    assert not running, "the case's child process outlived the run"


# -- memory ---------------------------------------------------------------------------------------

GREEDY = '''
import numpy as np

from diffbench import case


@case(inputs={"x": [1.0, 2.0]})
def greedy(x, xp):
    big = np.ones(2**30)  # 8 GiB
    return xp.sum(x * x) + float(big[0]) - 1.0


@case(inputs={"x": [1.0, 2.0]})
def modest(x, xp):
    return xp.sum(x * x)
'''


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA counts mappings on Linux only")
def test_a_case_past_the_memory_budget_gets_a_memory_row_and_the_rest_run(tmp_path):
    cases = tmp_path / "greedy.py"
    cases.write_text(GREEDY)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "finite", "--variants", "finite=central",
                       "--dtypes", "float64", "--no-order2", "--jobs", 1, "--memory", "2G", "--out", out)
    assert result.returncode == 4, result.stderr  # cases with no measured row (README: exit codes)
    df = rows_of(out)
    greedy = one(df, case="greedy", method="finite")
    assert greedy.status == "error"
    assert greedy.cause == "memory"
    assert "2 GiB" in greedy.diagnosis
    assert one(df, case="modest", method="finite").status == "ok"


def test_memory_sizes_parse_with_binary_suffixes():
    import argparse

    from diffbench.cli.options import memory

    assert memory("4G") == 4 * 2**30
    assert memory("512M") == 512 * 2**20
    assert memory("0") == 0
    for bad in ("-1G", "lots", "1K"):
        with pytest.raises(argparse.ArgumentTypeError):
            memory(bad)


# -- the reference's input budget ----------------------------------------------------------------

def test_a_case_past_the_reference_budget_is_checked_along_directions_at_once():
    from diffbench.case import make_case
    from diffbench.harness import REFERENCE_MAX_INPUTS, run

    n = REFERENCE_MAX_INPUTS + 1
    case = make_case(lambda x, xp: xp.sum(x * x), {"x": np.ones(n)}, name="too_many_for_the_reference")
    started = time.perf_counter()
    df = run([case], methods=["tape"], dtypes=["float64"], variants={"tape": ["function"]}, order2=False,
             timing=False, timeout=600)
    row = one(df, method="tape")
    # no certified reference: the gradient (2x, exact) is checked along random-sign directions against
    # Richardson derivatives instead, which a correct gradient passes
    assert row.status == "ok" and row.reference == "richardson-directions"
    assert f"budget of {REFERENCE_MAX_INPUTS}" in row.diagnosis
    # the reference itself takes 33 s at 10⁵ inputs; skipping it costs what the tape and ~40 calls of f cost
    assert time.perf_counter() - started < 300


# -- messages -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_assert_gradients_names_a_non_finite_input(bad):
    tf = pytest.importorskip("tensorflow")
    from diffbench import assert_gradients

    with pytest.raises(AssertionError, match=r"input 'x' contains .* at index \(1,\)"):
        assert_gradients(lambda x: tf.reduce_sum(x * x), {"x": np.array([1.0, bad])})


def test_assert_gradients_says_the_function_returned_none():
    pytest.importorskip("tensorflow")
    from diffbench import assert_gradients

    def forgets_return(x):
        x * x

    with pytest.raises(AssertionError, match="forgets_return returned None"):
        assert_gradients(forgets_return, {"x": np.array([1.0, 2.0])})


def test_a_non_finite_case_input_names_its_index_as_plain_numbers():
    from diffbench.case import make_case

    case = make_case(lambda x, xp: xp.sum(x), {"x": [1.0, np.inf]}, name="inf_input")
    assert "at index (1,)" in case.problem
    assert "np.int64" not in case.problem


# -- a case file edited during the run -----------------------------------------------------------

EDITS_ITSELF = '''
from pathlib import Path

from diffbench import case

HERE = Path(__file__)


@case(inputs={"x": 3.0})
def edits_itself(x, xp):
    text = HERE.read_text()
    if "x**2  # before" in text:  # the first call rewrites the file, as an editor saving mid-run would
        HERE.write_text(text.replace("x**2  # before", "x**3  # after!"))
    return x**2  # before
'''


@pytest.mark.slow
def test_rows_of_a_case_whose_file_changed_during_the_run_use_the_loaded_version_and_say_so(tmp_path):
    cases = tmp_path / "edits.py"
    cases.write_text(EDITS_ITSELF)
    out = tmp_path / "out"
    result = diffbench("run", "--cases", cases, "--methods", "tape", "--variants", "tape=eager,function",
                       "--dtypes", "float64", "--no-order2", "--jobs", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "x**3" in cases.read_text()  # the edit happened
    df = rows_of(out)
    # d/dx x² at 3 is 6, the loaded version; tf.function re-reading the edited file would give 27
    assert set(df.status) == {"ok"}, df[["variant", "status", "diagnosis"]]
    assert df.diagnosis.str.contains("changed after the run loaded it").all()
