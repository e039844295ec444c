"""Each engine against hand-derived gradients (scalar, vector, matrix), in both dtypes."""

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der, rosen_hess

from diffbench import case, gradient, hessian

ALL = ["symbolic/numpy", "symbolic/numpy-nocse", "symbolic/tensorflow", "tape/eager", "tape/function", "tape/xla",
       "tape/forward", "finite/forward", "finite/central", "finite/complex_step", "finite/richardson", "reference"]
# how close each method must come to the hand-derived value, relative, per dtype
TOL = {"float64": {"finite/forward": 1e-6, "finite/central": 1e-8, "finite/richardson": 1e-8},
       "float32": {"finite/forward": 5e-2, "finite/central": 1e-3, "finite/richardson": 1e-3}}


def tol(method, dtype):
    return TOL[dtype].get(method, 1e-12 if dtype == "float64" else 1e-5)


@case(inputs={"x": 1.5})
def cubic(x, xp):
    return x**3 - 2 * x


@case(inputs={"x": [-1.2, 1.0, 0.5, 2.0]})
def rosenbrock4(x, xp):
    return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


A = np.array([[1.0, 2.0], [-0.5, 3.0]])


@case(inputs={"W": [[0.3, -0.2], [0.1, 0.4]], "v": [1.0, -1.0]})
def bilinear(W, v, xp):
    a = xp.asarray([[1.0, 2.0], [-0.5, 3.0]])
    return xp.sum((a @ W) ** 2) + xp.sum(xp.tanh(W @ v))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", ALL)
def test_scalar(method, dtype):
    # d/dx (x³ − 2x) = 3x² − 2 = 4.75 at x = 1.5
    got = gradient(cubic, method, dtype)["x"]
    assert got.shape == ()
    assert float(got) == pytest.approx(4.75, rel=tol(method, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", ALL)
def test_vector_against_scipy(method, dtype):
    x = np.array([-1.2, 1.0, 0.5, 2.0])
    assert rosenbrock4.func(x, xp=np) == pytest.approx(rosen(x))
    got = gradient(rosenbrock4, method, dtype)["x"]
    np.testing.assert_allclose(got, rosen_der(x), rtol=tol(method, dtype) * 10, atol=tol(method, dtype) * 100)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", ALL)
def test_matrix_by_hand(method, dtype):
    W = np.array([[0.3, -0.2], [0.1, 0.4]])
    v = np.array([1.0, -1.0])
    # f = ‖AW‖²_F + Σ tanh(Wv):  ∂f/∂W = 2Aᵀ(AW) + (1 − tanh²(Wv)) vᵀ,  ∂f/∂v = Wᵀ(1 − tanh²(Wv))
    s = 1 - np.tanh(W @ v) ** 2
    want_W = 2 * A.T @ (A @ W) + np.outer(s, v)
    want_v = W.T @ s
    got = gradient(bilinear, method, dtype)
    assert got["W"].shape == (2, 2) and got["v"].shape == (2,)
    t = tol(method, dtype) * 10
    np.testing.assert_allclose(got["W"], want_W, rtol=t, atol=t)
    np.testing.assert_allclose(got["v"], want_v, rtol=t, atol=t)


@pytest.mark.parametrize("method,rtol", [("reference", 1e-14), ("symbolic", 1e-12), ("tape", 1e-12),
                                         ("finite", 1e-6)])
def test_hessian_against_scipy(method, rtol):
    x = np.array([-1.2, 1.0, 0.5, 2.0])
    got = hessian(rosenbrock4, method, "float64")
    assert got.shape == (4, 4)
    np.testing.assert_allclose(got, rosen_hess(x), rtol=rtol, atol=rtol * 1e3)


def test_hessian_flattens_inputs_in_parameter_order():
    @case(inputs={"a": 2.0, "b": [1.0, 3.0]})
    def mixed(a, b, xp):
        return a**2 * b[0] + a * b[1] ** 3

    # ∂² by hand at a = 2, b = (1, 3): f_aa = 2b0 = 2, f_ab0 = 2a = 4, f_ab1 = 3b1² = 27, f_b1b1 = 6ab1 = 36
    want = np.array([[2.0, 4.0, 27.0], [4.0, 0.0, 0.0], [27.0, 0.0, 36.0]])
    for method in ("reference", "symbolic", "tape"):
        np.testing.assert_allclose(hessian(mixed, method), want, rtol=1e-12)
    np.testing.assert_allclose(hessian(mixed, "finite"), want, rtol=1e-5, atol=1e-5)


def test_numpy_nocse_skips_a_gradient_tree_past_its_budget_and_the_cse_variants_keep_it(monkeypatch):
    # x ← x·(1 + x) three times: every step uses x twice, so the derivative's tree doubles with each step while
    # CSE shares it; with the budget set to 40 operations numpy-nocse is skipped naming the budget, and numpy
    # (the same formula with CSE) and tensorflow still give f'(x) by hand
    from diffbench.engines import symbolic
    from diffbench.harness import measure_one

    @case(inputs={"x": np.array([0.3])})
    def nested_square(x, xp):
        for _ in range(3):
            x = x * (1 + x)
        return xp.sum(x)

    monkeypatch.setattr(symbolic, "MAX_NOCSE_OPS", 40)

    def step(x):
        return x * (1 + x), 1 + 2 * x

    x, d = 0.3, 1.0
    for _ in range(3):
        x, dx = step(x)
        d *= dx
    skipped = measure_one(nested_square, "symbolic", "numpy-nocse", "float64")
    assert skipped["status"] == "skipped" and "MAX_NOCSE_OPS" in skipped["diagnosis"], skipped
    for variant in ("numpy", "tensorflow"):
        np.testing.assert_allclose(gradient(nested_square, f"symbolic/{variant}")["x"], [d], rtol=1e-14)
        assert measure_one(nested_square, "symbolic", variant, "float64")["status"] == "ok"
