"""Finite differences against hand-derived derivatives: Richardson's accuracy, steps near a
domain boundary and a pole, the one-sided fallback and its note, extrapolated Hessians, and
that a gradient's differences are computed once.

Tolerances are the method's own error model, ``metrics.tolerance`` (100·eps^(4/5) for
``richardson``, 100·eps^(1/2) for second differences; see diffbench/metrics.py and the
docstring of diffbench/engines/finite.py), never a number fitted to the output.
"""

import numpy as np
import pytest
from scipy.optimize import rosen_hess

from diffbench import case, gradient, hessian
from diffbench.engines import get_engine, output_shape
from diffbench.engines.finite import differentiate, hessian_matrix
from diffbench.metrics import tolerance

DTYPES = ["float64", "float32"]


def relative(got, want):
    got, want = np.asarray(got, dtype=np.float64).ravel(), np.asarray(want, dtype=np.float64).ravel()
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def as_dtype(value, dtype):
    """The input as a run in ``dtype`` holds it, back in float64 (the point the method is judged at)."""
    return np.asarray(value, dtype=dtype).astype(np.float64)


@case(inputs={"x": [0.3, -1.1, 2.5]})
def exp_sin(x, xp):
    return xp.sum(xp.exp(x) * xp.sin(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_richardson_on_a_smooth_vector_function(dtype):
    x = as_dtype([0.3, -1.1, 2.5], dtype)
    # d/dx [e^x sin x] = e^x (sin x + cos x), elementwise for a sum
    want = np.exp(x) * (np.sin(x) + np.cos(x))
    got = gradient(exp_sin, "finite/richardson", dtype)["x"]
    assert relative(got, want) <= tolerance("finite", "richardson", dtype)


@case(inputs={"x": 1e-3})
def log_small(x, xp):
    return xp.log(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_near_its_domain_boundary(dtype):
    """A first step of 0.25 reaches x − h < 0 (NaN); the step must shrink to the scale of x."""
    x = float(as_dtype(1e-3, dtype))
    prepared = get_engine("finite").prepare(log_small, "richardson", dtype)
    got = float(prepared.gradient()["x"])
    assert relative(got, 1 / x) <= tolerance("finite", "richardson", dtype)  # d log x / dx = 1/x
    assert "not finite" in prepared.info["note"]


@case(inputs={"x": 6e-6})
def inverse(x, xp):
    return 1.0 / x


@case(inputs={"x": 1 - 6e-6})
def inverse_distance(x, xp):
    return 1.0 / (1.0 - x)


@pytest.mark.parametrize("dtype", DTYPES)
# d(1/x)/dx = −1/x²; d(1/(1 − x))/dx = 1/(1 − x)²
@pytest.mark.parametrize("pole,derivative", [(inverse, lambda x: -1 / x**2),
                                             (inverse_distance, lambda x: 1 / (1 - x) ** 2)])
def test_point_six_micro_from_a_pole(pole, derivative, dtype):
    """A step of order 1 (or of central differences' 6e-6) would straddle the pole and get the sign wrong."""
    x = float(as_dtype(pole.inputs["x"], dtype))
    result = differentiate(_flat(pole, dtype), np.asarray([x], dtype=dtype), "richardson")
    assert relative(result.value, derivative(x)) <= tolerance("finite", "richardson", dtype)
    assert result.steps[0] < 6e-6  # the row the value came from stays on the pole's near side


def _flat(one_case, dtype):
    from diffbench.engines.finite import function_of

    return function_of(one_case, dtype)


@case(inputs={"x": 1.0})
def right_of_boundary(x, xp):
    """x² where x ≥ 1, undefined (NaN) left of 1."""
    return xp.where(x >= 1.0, x**2, xp.asarray(np.nan))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_on_one_side_switches_to_a_one_sided_table(dtype):
    prepared = get_engine("finite").prepare(right_of_boundary, "richardson", dtype)
    got = float(prepared.gradient()["x"])
    # the right derivative of x² at 1 is 2; every two-sided stencil has a NaN on its left
    assert relative(got, 2.0) <= tolerance("finite", "richardson", dtype)
    assert "one-sided forward" in prepared.info["note"]


def test_central_shrinks_its_step_when_a_stencil_point_is_nan():
    prepared = get_engine("finite").prepare(log_small, "central", "float32")
    got = float(prepared.gradient()["x"])
    assert np.isfinite(got)
    assert "shrunk" in prepared.info["note"]


@case(inputs={"x": [-1.2, 1.0, 0.5, 2.0]})
def rosenbrock4(x, xp):
    return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@case(inputs={"x": [3.0, 5.0, 7.0]})
def xyz_exp(x, xp):
    return x[0] * x[1] * x[2] + xp.exp(x[0]) * x[1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_hessian_of_rosenbrock_against_scipy(dtype):
    x = as_dtype([-1.2, 1.0, 0.5, 2.0], dtype)
    got = hessian(rosenbrock4, "finite", dtype)
    assert relative(got, rosen_hess(x)) <= tolerance("finite", "central", dtype, order=2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hessian_with_mixed_terms(dtype):
    x, y, z = as_dtype([3.0, 5.0, 7.0], dtype)
    # f = xyz + e^x y: f_xx = e^x y, f_xy = z + e^x, f_xz = y, f_yz = x, f_yy = f_zz = 0
    want = np.array([[np.exp(x) * y, z + np.exp(x), y], [z + np.exp(x), 0, x], [y, x, 0]])
    got = hessian(xyz_exp, "finite", dtype)
    assert relative(got, want) <= tolerance("finite", "central", dtype, order=2)


def test_hessian_is_extrapolated_beyond_plain_second_differences():
    """Plain second differences stop near eps^(1/2) ≈ 1.5e-8; the extrapolated table reaches eps^(2/3)."""
    x = np.array([-1.2, 1.0, 0.5, 2.0])
    result = hessian_matrix(_flat(rosenbrock4, "float64"), x)
    assert relative(result.value, rosen_hess(x)) <= np.finfo(np.float64).eps ** (2 / 3)


class Counting:
    """A case whose calls are counted."""

    def __init__(self):
        self.calls = 0

        @case(inputs={"x": [0.3, -1.1, 2.5]})
        def counted(x, xp):
            self.calls += 1
            return xp.sum(xp.exp(x) * xp.sin(x))

        self.case = counted


@pytest.mark.parametrize("variant", ["richardson", "central", "forward"])
def test_prepare_and_gradient_difference_once(variant):
    counter = Counting()
    output_shape(counter.case)  # the case's output shape is found once per case, by one NumPy call
    counter.calls = 0
    prepared = get_engine("finite").prepare(counter.case, variant, "float64")
    in_prepare = counter.calls
    prepared.gradient()
    assert counter.calls == in_prepare  # the gradient was computed while preparing
    counter.calls = 0
    prepared.timed()
    one_gradient = counter.calls
    if variant == "richardson":
        # its error estimate comes from the same table: preparing costs exactly one gradient
        assert in_prepare == one_gradient
    elif variant == "central":
        # n = 3 elements: f(x ± h) is the gradient (2n calls); the estimate adds f(x ± 2h) (a second step for
        # truncation, and with f(x) the five points whose fourth difference shows f's noise): 2n + 1 more
        assert (one_gradient, in_prepare) == (6, 6 + 6 + 1)
    else:
        # f(x) and f(x + h) (n + 1 calls); the estimate adds f(x − h) (the central difference its truncation is
        # measured against) and f(x ± 2h) (the noise): 3n more
        assert (one_gradient, in_prepare) == (4, 4 + 9)
    assert one_gradient >= 3  # timed() evaluates a whole gradient, not a cached value


def test_richardson_error_estimate_bounds_the_true_error():
    x = np.array([0.3, -1.1, 2.5])
    want = np.exp(x) * (np.sin(x) + np.cos(x))
    result = differentiate(_flat(exp_sin, "float64"), x.copy(), "richardson")
    assert np.all(result.error >= np.abs(result.value - want))


def test_a_finite_difference_hessian_projected_past_its_budget_is_given_up_early():
    import time

    from diffbench.errors import OverBudget

    def slow(x):
        time.sleep(0.01)  # 55 entries of at least 2 evaluations each: ≥ 1.1 s, projected past a 0.5 s budget
        return float(np.sum(x ** 3))

    x = np.linspace(0.5, 1.5, 10)
    start = time.perf_counter()
    with pytest.raises(OverBudget, match=r"55 entries would take about .* past its budget of 0.5 s"):
        hessian_matrix(slow, x, budget_s=0.5)
    # given up once the first second projected the whole past the budget, not after forming it
    calls = []
    hessian_matrix(lambda v: calls.append(1) or float(np.sum(v ** 3)), x)
    assert time.perf_counter() - start < 0.01 * len(calls)
    # without a budget the same Hessian is formed: diag(6x) for Σx³
    result = hessian_matrix(lambda v: float(np.sum(v ** 3)), x, budget_s=None)
    np.testing.assert_allclose(result.value, np.diag(6 * x), atol=1e-6)


def test_a_richardson_gradient_projected_past_its_budget_is_given_up_early():
    import time

    from diffbench.errors import OverBudget

    calls = []

    def slow(x):
        calls.append(1)
        time.sleep(0.01)  # 40 elements of at least 6 evaluations each: ≥ 2.4 s, projected past a 0.5 s budget
        return float(np.sum(x ** 3))

    x = np.linspace(0.5, 1.5, 40)
    with pytest.raises(OverBudget, match=r"40 gradient elements would take about .* past its budget of 0\.5 s "
                                         r"\(diffbench\.engines\.finite\.MAX_RICHARDSON_S\)"):
        differentiate(slow, x.copy(), "richardson", budget_s=0.5)
    used = len(calls)
    calls.clear()
    # given up once the first second projected the whole past the budget, not after finishing it
    result = differentiate(slow, x.copy(), "richardson", budget_s=None)
    assert used < len(calls) / 2
    # without a budget it is formed: 3x² for Σx³
    np.testing.assert_allclose(result.value, 3 * x ** 2, rtol=1e-10)


def test_the_engine_skips_richardson_past_its_budget_with_the_projection(monkeypatch):
    import time

    from diffbench import case as make_case
    from diffbench.engines import finite
    from diffbench.harness import measure_one

    monkeypatch.setattr(finite, "MAX_RICHARDSON_S", 0.3)

    @make_case(inputs={"x": np.linspace(0.5, 1.5, 30)})
    def slow_cubes(x, xp):
        time.sleep(0.01)
        return xp.sum(x ** 3)

    row = measure_one(slow_cubes, "finite", "richardson", "float64")
    assert row["status"] == "skipped", row
    assert "MAX_RICHARDSON_S" in row["diagnosis"] and "gradient elements would take about" in row["diagnosis"]
    # central differences of the same case are not limited by it
    assert measure_one(slow_cubes, "finite", "central", "float64")["status"] == "ok"
