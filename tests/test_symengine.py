"""The ``symengine`` variant of the symbolic method: gradients and Hessians against SciPy's Rosenbrock
formulas and hand derivatives, the fallback to SymPy, float32 rows, expression sizes, and the harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import rosen_der, rosen_hess

import diffbench
from diffbench import case
from diffbench.engines import Skip, flatten, get_engine
from diffbench.engines import symbolic

pytest.importorskip("symengine")


def rosenbrock_case(x: np.ndarray):
    @case(inputs={"x": x}, name=f"rosenbrock_{len(x)}")
    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    return rosenbrock


def points(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.uniform(-2.0, 2.0, n), np.linspace(-1.2, 1.5, n)]


def gradient(c, dtype: str = "float64", variant: str = "symengine"):
    prepared = get_engine("symbolic").prepare(c, variant, dtype)
    return prepared, flatten(prepared.gradient(), list(c.inputs))


@pytest.mark.parametrize("n", [2, 5, 120])
def test_rosenbrock_gradient_matches_scipy(n):
    for x in points(n):
        prepared, g = gradient(rosenbrock_case(x))
        truth = rosen_der(x)
        # every component's own scale: the summands of rosen_der are at most ~400·|x|³ + 200·|x|
        scale = 400 * np.abs(x) ** 3 + 600 * np.abs(x) + 2
        assert np.all(np.abs(g - truth) <= 1e-13 * scale), (n, g - truth)
        assert "note" not in prepared.info  # differentiated by SymEngine itself


@pytest.mark.parametrize("n", [3, 100])
def test_rosenbrock_hessian_matches_scipy(n):
    x = points(n)[0]
    hess = get_engine("symbolic").hessian(rosenbrock_case(x), "symengine", "float64")
    truth = rosen_hess(x)
    assert hess.shape == (n, n)
    np.testing.assert_allclose(hess, truth, rtol=1e-13, atol=1e-12 * np.abs(truth).max())


def test_hessian_budget_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(symbolic, "SYMENGINE_MAX_HESSIAN_INPUTS", 4)
    with pytest.raises(Skip, match="SymEngine Hessian budget of 4"):
        get_engine("symbolic").hessian(rosenbrock_case(np.linspace(0, 1, 5)), "symengine", "float64")


def test_input_budget_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(symbolic, "SYMENGINE_MAX_INPUTS", 4)
    with pytest.raises(Skip, match="SymEngine budget of 4"):
        get_engine("symbolic").prepare(rosenbrock_case(np.linspace(0, 1, 5)), "symengine", "float64")


def test_constant_and_zero_gradients():
    @case(inputs={"x": [0.3, -1.1], "y": 2.0})
    def linear_in_x(x, y, xp):
        return 3 * x[0] - 2 * x[1] + 7

    _, g = gradient(linear_in_x)
    np.testing.assert_array_equal(g, [3.0, -2.0, 0.0])


def test_erf_is_differentiated_by_symengine():
    @case(inputs={"x": [0.3, -1.1]})
    def erf_sum(x, xp):
        return xp.sum(xp.erf(2 * x))

    prepared, g = gradient(erf_sum)
    x = np.array([0.3, -1.1])
    # d/dx erf(2x) = 2 · 2/√π · exp(−4x²)
    np.testing.assert_allclose(g, 4 / math.sqrt(math.pi) * np.exp(-4 * x**2), rtol=1e-14)
    assert "note" not in prepared.info


def test_maximum_falls_back_to_sympy_and_says_so():
    @case(inputs={"x": [1.5, -2.0, 0.7]})
    def leaky_square(x, xp):
        return xp.sum(xp.maximum(x, 0.5 * x) ** 2)

    prepared, g = gradient(leaky_square)
    # max(x, x/2) is x for x > 0 (derivative of the square 2x) and x/2 below (2 · x/2 · 1/2 = x/2)
    np.testing.assert_allclose(g, [3.0, -1.0, 1.4], rtol=1e-15)
    assert prepared.info["note"].startswith(symbolic.SYMENGINE_FALLBACK)
    assert "maximum" in prepared.info["note"]
    assert prepared.info["expr_ops"] > 0 and prepared.info["grad_ops"] > 0


def test_float32_rows_compute_in_float32():
    x = np.array([-1.2, 1.0, 0.5, 2.0])
    prepared, g = gradient(rosenbrock_case(x), "float32")
    assert prepared.gradient()["x"].dtype == np.float32
    x32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(g, rosen_der(x32), rtol=1e-5, atol=1e-3)

    @case(inputs={"x": [100.0]})
    def softplus_naive(x, xp):
        return xp.sum(xp.log(xp.exp(x) + 1))

    # exp(100) ≈ 2.7e43 overflows float32 (max 3.4e38): exp(x)/(exp(x) + 1) is inf/inf = nan when the
    # formula is evaluated in float32, as the numpy variant does; in float64 it is 1
    _, g32 = gradient(softplus_naive, "float32")
    _, g64 = gradient(softplus_naive, "float64")
    assert np.isnan(g32[0]) and g64[0] == 1.0


def test_expression_sizes_follow_sympy_count_ops():
    x, y = sp.symbols("x y", real=True)
    import symengine as se

    expressions = [x - y, x / y, -x, x**-2, sp.exp(x) + 3 * sp.sin(y), 100 * (y - x**2) ** 2 + (1 - x) ** 2,
                   2 * x / (3 * y), 1 / (1 + sp.exp(-x)), sp.sqrt(x + y) * sp.log(x), -x - y, sp.atan2(y, x) - 2]
    for e in expressions:
        assert symbolic.count_ops([se.sympify(e)]) == sp.count_ops(e), e
    c = rosenbrock_case(np.linspace(-1, 1, 6))
    prepared, _ = gradient(c)
    assert prepared.info["expr_ops"] == sp.count_ops(symbolic.trace(c).f)
    # each distinct subexpression once: the gradient's DAG is smaller than its tree
    tree = symbolic.count_ops(symbolic.symengine_trace(c).gradient)
    assert 0 < prepared.info["grad_ops"] < tree


def test_through_the_harness():
    @case(inputs={"x": [1.5, -2.0, 0.7]})
    def leaky_square(x, xp):
        return xp.sum(xp.maximum(x, 0.5 * x) ** 2)

    df = diffbench.run([rosenbrock_case(np.array([-1.2, 1.0, 0.5, 2.0])), leaky_square], methods=["symbolic"],
                       variants={"symbolic": ["symengine"]}, timing=False, order2=False)
    assert set(df["variant"]) == {"symengine"} and len(df) == 4
    assert (df["status"] == "ok").all(), df[["case", "dtype", "status", "diagnosis"]]
    assert df["expr_ops"].notna().all() and df["grad_ops"].notna().all()
    fallback = df[df["case"] == "leaky_square"]
    assert fallback["diagnosis"].str.contains("SymEngine fallback").all()
    assert not df[df["case"] != "leaky_square"]["diagnosis"].fillna("").str.contains("fallback").any()


def test_a_block_over_the_compile_budget_is_skipped_with_its_size(monkeypatch):
    from diffbench.engines import symbolic
    from diffbench.harness import measure_one

    @case(inputs={"x": [0.3, 1.2]})
    def product_and_sine(x, xp):
        return x[0] * x[1] + xp.sin(x[0])

    # ∇f = (x1 + cos x0, x0): "+" and cos are 2 distinct operations, over a budget of 1; f itself has 3 (×, +, sin)
    monkeypatch.setattr(symbolic, "SYMENGINE_MAX_COMPILE_OPS", 1)
    row = measure_one(product_and_sine, "symbolic", "symengine", "float64")
    assert row["status"] == "skipped", row["diagnosis"]
    assert "2 distinct operations" in row["diagnosis"] and "SYMENGINE_MAX_COMPILE_OPS" in row["diagnosis"]
    monkeypatch.setattr(symbolic, "SYMENGINE_MAX_COMPILE_OPS", 3)
    row = measure_one(product_and_sine, "symbolic", "symengine", "float64")
    assert row["status"] == "ok", row["diagnosis"]


def test_a_hessian_whose_gradient_is_over_the_compile_budget_is_not_formed(monkeypatch):
    from diffbench.errors import OverBudget

    @case(inputs={"x": [0.3, 1.2]})
    def product_and_sine_again(x, xp):
        return x[0] * x[1] + xp.sin(x[0])

    # ∇f = (x1 + cos x0, x0): 2 distinct operations, over a budget of 1; H = [[−sin x0, 1], [1, 0]] within 3
    monkeypatch.setattr(symbolic, "SYMENGINE_MAX_COMPILE_OPS", 1)
    with pytest.raises(OverBudget, match="the gradient already has 2 distinct operations"):
        get_engine("symbolic").hessian(product_and_sine_again, "symengine", "float64")
    monkeypatch.setattr(symbolic, "SYMENGINE_MAX_COMPILE_OPS", 3)
    np.testing.assert_allclose(get_engine("symbolic").hessian(product_and_sine_again, "symengine", "float64"),
                               [[-math.sin(0.3), 1.0], [1.0, 0.0]], rtol=1e-15)


def test_sympy_is_not_started_where_symengine_counts_the_expression_far_past_the_budget():
    # 40 steps of the logistic map x ← 3.9x(1 − x): the tree doubles with every step (about 2⁴¹ operations),
    # which SymEngine counts in a blink; SymPy's trace is then skipped by the prediction, without tracing
    import time

    from diffbench.errors import OverBudget

    @case(inputs={"x": [0.3]})
    def logistic_40(x, xp):
        for _ in range(40):
            x = 3.9 * x * (1 - x)
        return xp.sum(x)

    start = time.perf_counter()
    with pytest.raises(OverBudget, match=r"SymEngine's trace of the same function counts \d+ operations.*SWELL_MARGIN"):
        symbolic.trace(logistic_40)
    assert time.perf_counter() - start < 10
    # a small expression is traced by SymPy as before: d/dx of 3.9x(1 − x) is 3.9(1 − 2x)
    @case(inputs={"x": [0.3]})
    def logistic_1(x, xp):
        return xp.sum(3.9 * x * (1 - x))

    np.testing.assert_allclose(diffbench.gradient(logistic_1, "symbolic/numpy")["x"], [3.9 * (1 - 0.6)], rtol=1e-15)
