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
    # quad and unused: 4 symbolic + 4 finite variants each, all ok; broken: one item that cannot run
    assert result.parseoutcomes() == {"passed": 16, "failed": 1}
    assert not list(pytester.path.glob("**/*.tmp")) and not list(pytester.path.glob("**/.diffbench*"))
