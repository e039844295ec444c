"""Mistakes named at the door: each case evaluated once at load, unseeded inputs, and run's exit code for a
case that could not be measured at all."""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbench.case import load_cases
from diffbench.cli.run import unmeasured_cases
from diffbench.door import check_function
from diffbench.selection import load_selected

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
X = {"x": np.array([1.0, 2.0, 3.0])}


def door(fn, inputs=X):
    return check_function(fn, inputs, "f")


# --------------------------------------------------------------------------- numpy on xp values
@pytest.mark.parametrize("fn,numpy_name,xp_name", [
    (lambda x, xp: xp.sum(np.exp(x)), "numpy.exp", "xp.exp"),
    (lambda x, xp: np.sum(xp.exp(x)), "numpy.sum", "xp.sum"),
    (lambda x, xp: xp.sum(np.tanh(x * 2)), "numpy.tanh", "xp.tanh"),
    (lambda x, xp: xp.sum(np.arctan(x)), "numpy.arctan", "xp.atan"),  # NumPy's name, the array API's fix
    (lambda x, xp: np.log(x[0]), "numpy.log", "xp.log"),  # on one element (NumPy calls the element's .log())
    (lambda x, xp: xp.sum(np.sqrt(xp.exp(x))), "numpy.sqrt", "xp.sqrt"),  # on a value xp computed
    (lambda x, xp: np.dot(x, x), "numpy.dot", "xp.vecdot"),  # answered by meaning
    (lambda x, xp: np.max(x), "numpy.max", "xp.max"),
    (lambda x, xp: np.linalg.det(xp.reshape(xp.concat([x, x]), (2, 3)) @ xp.reshape(x, (3, 1)) * x[:2]),
     "numpy.linalg.det", "xp.linalg.det"),
])
def test_a_numpy_function_on_an_xp_value_is_named_with_its_xp_name(fn, numpy_name, xp_name):
    found = door(fn)
    assert found is not None and found.startswith(f"f calls {numpy_name} on an xp value: use {xp_name}"), found


@pytest.mark.parametrize("fn", [
    # operators with NumPy arrays and scalars on either side work on every namespace's values
    lambda x, xp: xp.sum(x * 2 + np.arange(3) * x - np.float64(2) * x + abs(x) + x @ x + (-x) ** 2 / x),
    lambda x, xp: xp.sum(np.array([1.0, 2.0, 3.0]) @ x + x[1:] - x[:-1]),
    # shape queries and constants from NumPy are fine
    lambda x, xp: xp.sum(x[np.shape(x)[0] - 1:]) * np.pi + np.sqrt(2.0),
    # a branch chosen by the inputs may return a constant: piecewise constant is not independent
    lambda x, xp: 1.0 if x[0] > 5 else xp.sum(x),
    lambda x, xp: 2.0 if x[0] > 0 else xp.sum(x),
    lambda x, xp: xp.where(x[0] > 5, xp.sqrt(x[0]), 0.0),
    lambda x, xp: xp.sum(xp.maximum(x, 10.0)),  # the constant branch of a maximum depends on x
    # ndarray methods are the values' own (NumPy runs them internally), and casts keep the values
    lambda x, xp: x.max() + x.clip(0).sum() + x.astype(float).mean(),
])
def test_no_finding_for_what_works_everywhere(fn):
    assert door(fn) is None


def test_no_case_of_the_library_gives_a_finding():
    found = {c.name: check_function(c.func, c.inputs, c.name) for c in load_cases(ROOT / "cases") if not c.problem}
    assert len(found) > 50 and {k: v for k, v in found.items() if v} == {}


def test_the_case_s_own_errors_are_left_to_the_methods():
    def raises(x, xp):
        raise RuntimeError("mine")

    def exits(x, xp):
        os._exit(3)  # would end the loading process: the door must survive it

    assert door(raises) is None and door(exits) is None
    assert door(lambda x, xp: xp.erfcx(x)) is None  # an unknown xp name has its own case-level row


# --------------------------------------------------------------------------- what the function returns
def test_an_array_result_is_a_vector_output():
    # an array is a vector output (its derivative is the Jacobian), whatever its shape
    assert door(lambda x, xp: xp.reshape(xp.concat([x, x]), (2, 3))) is None
    # an output that does not depend on an input is a zero block, not a mistake: one entry that varies is enough
    assert door(lambda x, xp: xp.stack([x[0] * 2.0, xp.asarray(1.0)])) is None


def test_several_outputs_are_named():
    found = door(lambda x, xp: (x[0], x[1]))
    assert found.startswith("f returns a tuple") and "scalar or one array" in found


def test_an_array_that_depends_on_nothing_is_named():
    found = door(lambda x, xp: xp.zeros(3))
    assert found.startswith("f returns an array of shape (3,) none of whose entries depends on its inputs")
    found = door(lambda x, xp: np.array([1.0, 2.0]))
    assert found.startswith("f returns an array of shape (2,) none of whose entries")


def test_an_array_of_something_else_is_named():
    found = door(lambda x, xp: np.array(["a", "b"]))
    assert found.startswith("f returns an array holding") and "not numbers" in found


def test_none_is_named():
    def forgot(x, xp):
        xp.sum(x)

    assert door(forgot).startswith("f returns None")


def test_a_constant_is_named():
    assert door(lambda x, xp: 3.0).startswith("f returns the constant 3.0, which does not depend on its inputs")
    # float() of an input cuts the dependence: math.exp(1.0) = e is what comes back
    found = door(lambda x, xp: math.exp(float(x[0])))
    assert found.startswith(f"f returns the constant {math.e!r}")
    # x - x is 0 at every point but depends on x: not a constant
    assert door(lambda x, xp: xp.sum(x - x)) is None


# --------------------------------------------------------------------------- through the loaders
CASES = textwrap.dedent('''
    import numpy as np
    from diffbench import case

    @case(inputs={"x": np.random.default_rng().uniform(.5, 2, 3)})
    def unseeded(x, xp):
        return xp.sum(x ** 2)

    @case(inputs={"x": np.random.default_rng(7).uniform(.5, 2, 3)}, tags=["good"])
    def seeded(x, xp):
        return xp.sum(x ** 2)

    @case(inputs={"x": [1.0, 2.0]}, tags=["good"])
    def good(x, xp):
        return xp.sum(x ** 2)

    @case(inputs={"x": 1.0}, tags=[1, None])
    def bad_tags(x, xp):
        return x ** 2

    @case(inputs={"x": [1.0, 2.0]})
    def numpy_exp(x, xp):
        return xp.sum(np.exp(x))
''')


def test_load_selected_gives_each_mistake_as_the_case_s_problem(tmp_path):
    path = tmp_path / "cases.py"
    path.write_text(CASES)
    found = {c.name: c.problem for c in load_selected(path)}
    assert found["good"] is None and found["seeded"] is None
    assert "unseeded randomness" in found["unseeded"] and "seeded generator" in found["unseeded"]
    assert "tags" in found["bad_tags"] and "[1, None]" in found["bad_tags"]
    assert found["numpy_exp"].startswith("numpy_exp calls numpy.exp on an xp value: use xp.exp")
    # a bad tag does not break -k for the others
    assert sorted(c.name for c in load_selected(path, "good")) == ["good", "seeded"]


def test_snapshot_refuses_unseeded_inputs_naming_the_case(tmp_path):
    path = tmp_path / "cases.py"
    path.write_text(CASES)
    out = subprocess.run([sys.executable, "-m", "diffbench", "snapshot", "--cases", str(path), "-k", "good",
                          "--methods", "symbolic", "--dtypes", "float64", "--no-timing", "--baseline",
                          str(tmp_path / "b.json")], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "'unseeded'" in out.stderr and "unseeded randomness" in out.stderr
    assert not (tmp_path / "b.json").exists()


def test_list_shows_each_problem(tmp_path):
    path = tmp_path / "cases.py"
    path.write_text(CASES)
    out = subprocess.run([sys.executable, "-m", "diffbench", "list", "--cases", str(path)], capture_output=True,
                         text=True, cwd=ROOT, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = {line.split("(")[0]: line for line in out.stdout.splitlines()}
    assert "PROBLEM" not in lines["good"] and "PROBLEM" not in lines["seeded"]
    for name in ("unseeded", "bad_tags", "numpy_exp"):
        assert "PROBLEM" in lines[name]


@pytest.mark.slow
def test_run_gives_one_case_row_per_mistake_and_exits_4(tmp_path):
    path = tmp_path / "cases.py"
    path.write_text(CASES)
    out = subprocess.run([sys.executable, "-m", "diffbench", "run", "--cases", str(path), "--methods", "finite",
                          "--variants", "finite=central", "--dtypes", "float64", "--no-order2", "--jobs", "1",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, env=ENV,
                         timeout=600)
    assert out.returncode == 4, out.stderr
    df = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
    for name in ("unseeded", "bad_tags", "numpy_exp"):
        rows = df[df.case == name]
        assert list(rows.method) == ["case"] and list(rows.status) == ["error"], rows
    assert set(df[df.case == "good"].status) == {"ok"}
    assert "could not be measured at all" in out.stderr and "numpy_exp" in out.stderr


# --------------------------------------------------------------------------- the exit code's rule
def test_unmeasured_cases_are_those_without_a_measured_row():
    rows = [
        {"case": "a", "method": "finite", "status": "error", "expected": "ok"},
        {"case": "a", "method": "finite", "status": "timeout", "expected": "ok"},
        {"case": "b", "method": "finite", "status": "error", "expected": "ok"},
        {"case": "b", "method": "finite", "status": "inaccurate", "expected": "ok"},  # b measured once: fine
        {"case": "c", "method": "case", "status": "error", "expected": "ok"},  # a case note alone
        {"case": "d", "method": "tape", "status": "error", "expected": "error"},  # expected: not counted
        {"case": "e", "method": "sweep", "status": "ok", "expected": "ok"},
        {"case": "e", "method": "finite", "status": "error", "expected": "ok"},  # a sweep point is no measurement
    ]
    assert unmeasured_cases(rows) == ["a", "c", "e"]
