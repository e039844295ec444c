"""The pytest plugin, run as a user would (pytester, in a subprocess)."""

import pytest

CASES = '''
from diffbench import case


@case(inputs={"x": 3.0})
def quad(x, xp):
    return x**2


@case(inputs={"x": 2.0, "y": 1.0}, expect={"tape": "none"})
def unused(x, y, xp):
    return x**2


@case(inputs={"x": 1e-4})
def cancels(x, xp):
    return (1 - xp.cos(x)) / x**2
'''


def test_cases_become_items_with_expected_statuses(pytester):
    pytester.makepyfile(mycases=CASES)
    result = pytester.runpytest_subprocess("--diffbench-cases", "mycases.py", "--diffbench-methods", "symbolic,tape",
                                           "--diffbench-dtypes", "float64", "-v")
    result.stdout.fnmatch_lines(["*quad[[]tape-function-float64[]] PASSED*", "*unused[[]tape-eager-float64[]] PASSED*",
                                 "*cancels[[]symbolic-numpy-float64[]] FAILED*"])
    result.stdout.fnmatch_lines(["*expected status 'ok', got 'inaccurate'*cancellation*"])
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 8  # every exact variant of the cancelling case (4 symbolic + 4 tape)
    assert outcomes["passed"] == 16
    # tape's loop, jvp and vjp items of the three scalar cases: vector outputs only (batch: no case has its tag)
    assert outcomes["skipped"] == 9


FORGETFUL = '''
from diffbench import case

EPS = 1.25e-4


@case(inputs={"x": [0.3, 0.4]})
def soft_norm(x, xp):
    return xp.sqrt(xp.sum(x**2) + EPS)


@soft_norm.tensorflow
def _(x):
    import tensorflow as tf

    @tf.custom_gradient
    def f(v):
        s = tf.reduce_sum(v**2)

        def grad(dy):
            return dy * v / tf.sqrt(s)  # forgets EPS: off by EPS/(2·0.25) = 2.5e-4 relative
        return tf.sqrt(s + EPS), grad

    return f(x)
'''


def test_the_plugin_gives_the_same_diagnosis_as_run(pytester):
    # a custom gradient that forgets eps in the backward pass: run names the custom gradient, and so must
    # the plugin (one judge for both), in float32 too
    pytester.makepyfile(forgetful=FORGETFUL)
    result = pytester.runpytest_subprocess("--diffbench-cases", "forgetful.py", "--diffbench-methods", "tape",
                                           "--diffbench-dtypes", "float32,float64", "-k", "eager")
    result.stdout.fnmatch_lines(["*soft_norm tape/eager float32: expected status 'ok', got 'inaccurate'*"
                                 "check its tf.custom_gradient*"])
    assert result.parseoutcomes()["failed"] == 2


XDIST_CASES = '''
from diffbench import case


@case(inputs={"x": 3.0})
def quad(x, xp):
    return x**2


@case(inputs={"x": 2.0, "y": 1.0}, expect={"tape": "none"})
def unused(x, y, xp):
    return x**2


@case(inputs={"x": "three"})
def broken(x, xp):
    return x
'''


@pytest.mark.slow
def test_items_give_the_same_outcomes_spread_over_xdist_workers(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(mycases=XDIST_CASES)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--diffbench-cases", "mycases.py",
                                           "--diffbench-methods", "symbolic,finite", "--diffbench-dtypes", "float64")
    result.stdout.fnmatch_lines(["*2 workers*"])
    # quad and unused: 4 symbolic + 4 finite variants each, all ok; broken: one item that cannot run; finite's jvp
    # and vjp items of the two scalar cases skipped (vector outputs only)
    assert result.parseoutcomes() == {"passed": 16, "failed": 1, "skipped": 4}
    assert not list(pytester.path.glob("**/*.tmp")) and not list(pytester.path.glob("**/.diffbench*"))


EXITS = '''
import os

from diffbench import case


@case(inputs={"x": 3.0})
def first(x, xp):
    return x**2


@case(inputs={"x": 2.0})
def exits(x, xp):
    os._exit(0)


@case(inputs={"x": 1.0})
def last(x, xp):
    return x**3
'''


@pytest.mark.slow
def test_a_case_that_ends_its_process_fails_its_items_and_the_rest_run(pytester):
    # os._exit(0) in the pytest process would end the session with exit 0 and skip every later item
    pytester.makepyfile(exits=EXITS)
    result = pytester.runpytest_subprocess("--diffbench-cases", "exits.py", "--diffbench-methods", "finite",
                                           "--diffbench-dtypes", "float64")
    # first and last: 4 finite variants each, ok; exits: its 4 items fail; the jvp and vjp items of the scalar
    # cases skipped (vector outputs only; exits, whose shape is never learnt, is planned as a scalar)
    assert result.parseoutcomes() == {"passed": 8, "failed": 4, "skipped": 6}
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*expected status 'ok', got 'error'*exit code 0*"])
    assert "<Status." not in result.stdout.str()


EXITS_AT_IMPORT = '''
import os

os._exit(0)
'''


@pytest.mark.slow
def test_a_case_file_that_ends_the_process_at_import_fails_and_the_other_files_run(pytester):
    pytester.makepyfile(a_exits=EXITS_AT_IMPORT, b_fine=CASES.split("@case(inputs={\"x\": 2.0")[0])
    result = pytester.runpytest_subprocess("--diffbench-cases", "a_exits.py", "--diffbench-cases", "b_fine.py",
                                           "--diffbench-methods", "finite", "--diffbench-dtypes", "float64")
    # a_exits: one failing item; b_fine (quad alone): 4 finite variants, ok, its jvp and vjp items skipped
    assert result.parseoutcomes() == {"passed": 4, "failed": 1, "skipped": 2}
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*ended the process*exit code 0*"])
