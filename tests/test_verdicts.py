"""Verdicts against truths derived by hand: the certified reference, kinks, C¹-not-C² points,
scale invariance, componentwise judgement, the right reason, and one verdict everywhere.

Every expected number is derived in the comment next to it and evaluated here with mpmath
or NumPy directly, never with diffbench.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from diffbench import case
from diffbench.harness import make_config, measure_case, measure_one
from diffbench.reference import reference


def rows_of(one, methods=("symbolic", "tape", "finite"), dtypes=("float64",), order2=False, variants=None):
    config = make_config(list(methods), list(dtypes), variants, order2=order2, timing=False, devices=("CPU",), sweep=False)
    out = []
    measure_case(one, config, out.append)
    return out


def status_of(rows, method, variant, dtype="float64", order=1):
    found = [r for r in rows if (r["method"], r["variant"], r["dtype"], r["order"]) == (method, variant, dtype, order)]
    assert found, f"no row {method}/{variant} {dtype} order {order}"
    return found[0]


# --------------------------------------------------------------------------- 1. a certified reference
def test_tanh_far_out_is_certified_and_only_the_complex_step_is_right():
    @case(inputs={"x": 60.0})
    def tanh_60(x, xp):
        return xp.tanh(x)

    # d tanh/dx = sech²(x) = 4 / (e^x + e^−x)²; at 60 digits 1 − tanh²(60) is 0, the truth is 3.07e−52
    with mpmath.workdps(80):
        truth = float(4 / (mpmath.exp(60) + mpmath.exp(-60)) ** 2)
    ref = reference(tanh_60)
    assert ref.uncertain is None
    assert ref.values["x"] == pytest.approx(truth, rel=1e-15)
    # the complex step Im f(x + ih)/h differentiates tanh analytically: right to rounding
    assert measure_one(tanh_60, "finite", "complex_step", "float64")["status"] == "ok"
    # TensorFlow's tanh gradient is 1 − y² with y = 1.0 in float64: 0, wrong by 100 %
    tape = measure_one(tanh_60, "tape", "eager", "float64")
    assert tape["status"] == "inaccurate"
    assert "tanh" in tape["diagnosis"] and "built-in" in tape["diagnosis"]
    assert "check its tf.custom_gradient" not in tape["diagnosis"]


def test_softmax_cross_entropy_far_logit_is_certified():
    @case(inputs={"x": [200.0, 0.0, -5.0]})
    def softmax_ce(x, xp):
        m = xp.max(x)
        return m + xp.log(xp.sum(xp.exp(x - m))) - x[0]

    # ∂/∂x_j [log Σ e^{x_k} − x_0] = softmax_j − [j = 0]; with S = 1 + e^−200 + e^−205:
    # component 0 = −(e^−200 + e^−205)/S ≈ −1.39e−87, 1 = e^−200/S, 2 = e^−205/S
    with mpmath.workdps(200):
        s = 1 + mpmath.exp(-200) + mpmath.exp(-205)
        truth = [float(-(mpmath.exp(-200) + mpmath.exp(-205)) / s), float(mpmath.exp(-200) / s),
                 float(mpmath.exp(-205) / s)]
    ref = reference(softmax_ce)
    assert ref.uncertain is None
    np.testing.assert_allclose(ref.values["x"], truth, rtol=1e-14)
    # component 0 is a cancellation of terms of size 1 (dm/dx0 = 1, −x0, the softmax term): a method
    # that returns 0 or −1.39e−87 there is right to rounding at that scale
    rows = rows_of(softmax_ce, methods=("symbolic", "tape"))
    assert status_of(rows, "symbolic", "numpy")["status"] == "ok"


def test_a_reference_that_cannot_be_certified_says_so():
    from diffbench.diagnose import judge

    @case(inputs={"x": 1.5})
    def noise(x, xp):
        # f' = sin(w) with w = A·(1/3.0)·3 − A = A·(3·fl(1/3) − 1) ≈ −5.6e−17·A and A = e^2800:
        # w ≈ −10^1199, so sin(w) needs over 4000 bits of A; at every precision tried the rounding
        # of A moves w by far more than 2π and sin(w) never settles
        big = xp.exp(xp.asarray(700.0)) ** 4
        return x * xp.sin(big * (1 / xp.asarray(3.0)) * 3 - big)

    ref = reference(noise)
    assert ref.uncertain is not None and "could not be certified" in ref.uncertain
    verdict = judge(noise, "symbolic", "numpy", "float64", np.array([0.25]), ref)
    assert verdict.status == "uncertain" and "certified" in verdict.diagnosis


# --------------------------------------------------------------------------- 2. kinks, decided exactly
@pytest.mark.parametrize("name, func, point, truth", [
    # ‖x‖ at (3e−20, 4e−20): x/‖x‖ = (0.6, 0.8); smooth, however small the point
    ("norm_tiny", lambda x, xp: xp.sqrt(xp.sum(x**2)), {"x": [3e-20, 4e-20]}, [0.6, 0.8]),
    # 1/x at 1e−12: −1/x² = −1e24
    ("reciprocal_tiny", lambda x, xp: 1 / x, {"x": 1e-12}, [-1e24]),
    # log x at 1e−300: 1/x = 1e300
    ("log_tiny", lambda x, xp: xp.log(x), {"x": 1e-300}, [1e300]),
    # 1e12·x² at 0: 2e12·x = 0
    ("steep_parabola", lambda x, xp: 1e12 * x**2, {"x": 0.0}, [0.0]),
    # x − x + 2: constant, derivative 0 (SymPy folds the function to the Integer 2)
    ("constant", lambda x, xp: x - x + 2, {"x": 1.0}, [0.0]),
])
def test_smooth_points_are_never_kinks(name, func, point, truth):
    one = case(inputs=point, name=name)(func)
    ref = reference(one)
    assert ref.undefined is None
    np.testing.assert_allclose(np.ravel(ref.values["x"]), truth, rtol=1e-15)
    rows = rows_of(one, methods=("symbolic", "tape"))
    assert {r["status"] for r in rows} == {"ok"}, [(r["method"], r["variant"], r["status"], r["diagnosis"])
                                                   for r in rows if r["status"] != "ok"]


def test_a_tiny_kink_is_still_a_kink():
    @case(inputs={"x": 0.0})
    def small_abs(x, xp):
        return 1e-13 * xp.abs(x)

    # one-sided derivatives ∓1e−13: not differentiable, whatever the scale
    ref = reference(small_abs)
    assert ref.undefined and ref.kinks[0].left == pytest.approx(-1e-13) and ref.kinks[0].right == pytest.approx(1e-13)
    assert {r["status"] for r in rows_of(small_abs, methods=("symbolic", "tape"))} == {"undefined"}


def test_a_kink_among_many_inputs_is_found_without_a_cap():
    x0 = np.linspace(0.5, 2.0, 500)
    x0[137] = 0.0

    @case(inputs={"x": x0})
    def relu_sum(x, xp):
        return xp.sum(xp.maximum(x, 0.0))

    # max(x, 0) at x = 0: left slope 0, right slope 1, only along x[137]
    ref = reference(relu_sum)
    assert [k.index for k in ref.kinks] == [137]
    assert (ref.kinks[0].left, ref.kinks[0].right) == (0.0, 1.0)
    tape = measure_one(relu_sum, "tape", "function", "float64")
    assert tape["status"] == "undefined" and "custom_gradient" not in tape["diagnosis"]


# --------------------------------------------------------------------------- 3. C¹ but not C²
def test_c1_join_is_undefined_for_second_order_only():
    @case(inputs={"x": 0.0})
    def odd_square(x, xp):
        return xp.where(x > 0, x**2, -(x**2))

    # f' = 2|x| → 0 from both sides (exists); f'' = +2 right, −2 left (does not exist)
    rows = rows_of(odd_square, order2=True)
    first = [r for r in rows if r["order"] == 1]
    second = [r for r in rows if r["order"] == 2]
    assert {r["status"] for r in first if r["method"] != "finite"} == {"ok"}
    assert second and {r["status"] for r in second} == {"undefined"}
    assert all("cancellation" not in (r["diagnosis"] or "") for r in second)


def test_c2_join_keeps_second_order():
    @case(inputs={"x": 0.0})
    def sine_join(x, xp):
        return xp.where(x > 0, xp.sin(x), x)

    # f' = cos x → 1 and 1; f'' = −sin x → 0 and 0: C² at 0, the Hessian 0 exists
    ref = reference(sine_join)
    assert ref.undefined is None and ref.order2_undefined is None
    rows = rows_of(sine_join, methods=("symbolic", "tape"), order2=True)
    assert {r["status"] for r in rows if r["order"] == 2} <= {"ok", "none"}


# --------------------------------------------------------------------------- 4. scale invariance
def _verdicts(func, point, dtypes=("float32", "float64")):
    one = case(inputs=point, name="scaled")(func)
    return {(r["method"], r["variant"], r["dtype"]): r["status"]
            for r in rows_of(one, methods=("symbolic", "tape"), dtypes=dtypes)}


def test_a_zero_gradient_from_cancelling_terms_is_ok_at_any_scale():
    # sin² + cos² = 1: the derivative 2 sin cos − 2 cos sin is 0; each term has size |sin 2x|·c
    def scaled_by(c):
        def pythagoras(x, xp):
            return c * (xp.sin(x) ** 2 + xp.cos(x) ** 2)
        return pythagoras

    base = _verdicts(scaled_by(1.0), {"x": 0.7})
    assert set(base.values()) == {"ok"}
    for c in (1e8, 1e-8, 3.0):
        assert _verdicts(scaled_by(c), {"x": 0.7}) == base


@pytest.mark.parametrize("k", [-20, -3, 5, 30])
def test_scaling_the_inputs_by_a_power_of_two_changes_no_verdict(k):
    # g(u) = f(u·2^−k) at u = x·2^k is the same computation with the inputs' exponents shifted
    def lse(x, xp):
        m = xp.max(x)
        return m + xp.log(xp.sum(xp.exp(x - m)))

    x0 = np.array([1.5, -0.25, 3.0])
    def lse_scaled(x, xp):
        return lse(x * 2.0**-k, xp)

    base = _verdicts(lse, {"x": x0})
    scaled = _verdicts(lse_scaled, {"x": x0 * 2.0**k})
    assert scaled == base


# --------------------------------------------------------------------------- 5. componentwise
def test_a_wrong_small_component_next_to_a_large_one_fails():
    @case(inputs={"x": 1.0, "y": 1.0})
    def lopsided(x, y, xp):
        return 1e5 * x**2 + y

    @lopsided.tensorflow
    def _(x, y):
        import tensorflow as tf

        @tf.custom_gradient
        def f(a, b):
            def grad(dy):
                return dy * 2e5 * a, dy * 2.0  # ∂f/∂y is 1: the second component is 100 % wrong
            return 1e5 * a**2 + b, grad

        return f(x, y)

    # ∇f = (2e5, 1); the tape returns (2e5, 2): normwise 5e−6, below float32's 1000·eps = 1.2e−4
    row = measure_one(lopsided, "tape", "eager", "float32")
    assert row["status"] == "inaccurate"
    assert "custom_gradient" in row["diagnosis"]


# --------------------------------------------------------------------------- 6. right reasons
def test_zero_to_a_power_is_differentiable_with_zero_partials():
    @case(inputs={"x": 0.0, "y": 2.0})
    def power(x, y, xp):
        return x**y

    # ∂/∂x x^y = y·x^(y−1) = 0; ∂/∂y x^y = 0 as 0^y = 0 for every y > 0
    ref = reference(power)
    assert ref.undefined is None
    assert float(ref.values["x"]) == 0.0 and float(ref.values["y"]) == 0.0


def test_a_complex_result_is_named_as_such():
    @case(inputs={"x": 1.0})
    def complex_valued(x, xp):
        return x * (1 + 1j)

    row = measure_one(complex_valued, "tape", "eager", "float64")
    assert row["status"] == "error"
    assert "complex" in row["diagnosis"] and "square root" not in row["diagnosis"]


def test_a_stencil_that_crosses_a_kink_is_said():
    @case(inputs={"x": 0.0})
    def near_kink(x, xp):
        return xp.abs(x - 1e-3)

    # f'(0) = −1; float32 central steps h ≈ 4.9e−3 reach past the kink at 1e−3:
    # (|h − 1e−3| − |−h − 1e−3|)/2h = −1e−3/h ≈ −0.2
    row = measure_one(near_kink, "finite", "central", "float32")
    assert row["status"] == "inaccurate"
    assert "crosses a kink" in row["diagnosis"]


def test_builtin_prod_hessian_at_a_zero_names_the_op():
    @case(inputs={"x": [0.0, 3.0, 2.0]})
    def product(x, xp):
        return xp.prod(x)

    # f = x0·x1·x2: H = [[0, x2, x1], [x2, 0, x0], [x1, x0, 0]] = [[0, 2, 3], [2, 0, 0], [3, 0, 0]]
    from diffbench.reference import reference_hessian

    np.testing.assert_allclose(reference_hessian(product), [[0, 2, 3], [2, 0, 0], [3, 0, 0]], atol=1e-30)
    row = [r for r in rows_of(product, methods=("tape",), order2=True) if r["order"] == 2][0]
    if row["status"] == "inaccurate":  # TensorFlow versions differ on this Hessian
        assert "reduce_prod" in row["diagnosis"] and "check its tf.custom_gradient" not in row["diagnosis"]


def test_a_reference_hessian_predicted_past_its_budget_is_not_formed_and_says_why():
    import time

    from diffbench.errors import ReferenceUnavailable
    from diffbench.reference import reference_hessian

    calls = []

    @case(inputs={"x": np.linspace(0.5, 1.5, 30)})
    def cubes(x, xp):
        calls.append(1)
        if type(x) is not np.ndarray:  # the reference's tape array (a subclass)
            time.sleep(0.05)  # each high-precision gradient: ≥ 0.05 s, so 2·30 + 2 of them ≥ 3.1 s
        return xp.sum(x * x * x)

    reference(cubes)
    before = len(calls)
    start = time.perf_counter()
    with pytest.raises(ReferenceUnavailable, match=r"62 gradients in high precision.*past the 1 s budget"):
        reference_hessian(cubes, budget_s=1.0)
    assert len(calls) == before + 1  # one gradient timed, none formed
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ReferenceUnavailable):  # settled for the case: not tried again
        reference_hessian(cubes)

    @case(inputs={"x": np.linspace(0.5, 1.5, 6)})
    def small_cubes(x, xp):
        return xp.sum(x * x * x)

    # within its budget it is formed: the Hessian of Σx³ is diag(6x)
    np.testing.assert_allclose(reference_hessian(small_cubes, budget_s=60.0),
                               np.diag(6 * np.linspace(0.5, 1.5, 6)), rtol=1e-15, atol=1e-300)


# --------------------------------------------------------------------------- 7. one verdict everywhere
EPS = 1.25e-4  # with x = (0.3, 0.4): Σx² = 0.25, the missing eps changes the gradient by eps/(2·0.25) = 2.5e−4


def _forgetful_norm(x):
    import tensorflow as tf

    @tf.custom_gradient
    def f(v):
        s = tf.reduce_sum(v**2)

        def grad(dy):
            return dy * v / tf.sqrt(s)  # should be v / sqrt(s + eps)
        return tf.sqrt(s + EPS), grad

    return f(x)


def test_run_names_the_custom_gradient():
    @case(inputs={"x": [0.3, 0.4]})
    def soft_norm(x, xp):
        return xp.sqrt(xp.sum(x**2) + EPS)

    soft_norm.tensorflow(_forgetful_norm)
    # true ∂/∂x = x / sqrt(0.25 + 1.25e−4): relative error of x/sqrt(0.25) is ≈ 2.5e−4
    for dtype in ("float32", "float64"):
        row = measure_one(soft_norm, "tape", "eager", dtype)
        assert row["status"] == "inaccurate"
        assert "custom_gradient" in row["diagnosis"]
        assert math.isclose(row["rel_error"], 2.5e-4, rel_tol=0.05)


def test_assert_gradients_catches_it_in_float32_without_a_reference():
    import tensorflow as tf

    from diffbench import assert_gradients

    with pytest.raises(AssertionError, match="custom_gradient"):
        assert_gradients(_forgetful_norm, {"x": tf.constant([0.3, 0.4], dtype=tf.float32)})


# --------------------------------------------------------------------------- the point as each dtype holds it
def test_float32_rows_are_judged_at_the_float32_point():
    @case(inputs={"x": 0.1 + 3e-9})
    def shifted_square(x, xp):
        return (x - 0.1) ** 2

    # f' = 2(x − 0.1). A float32 program holds x and the constant 0.1 in float32, so its truth is
    # 2·(float32(x) − float32(0.1)), exact in float64 arithmetic (both are float32 values, close together)
    x64 = 0.1 + 3e-9
    truth32 = 2 * (float(np.float32(x64)) - float(np.float32(0.1)))
    with mpmath.workdps(50):
        truth64 = float(2 * (mpmath.mpf(x64) - mpmath.mpf(0.1)))
    assert float(reference(shifted_square, "float32").values["x"]) == truth32
    assert float(reference(shifted_square, "float64").values["x"]) == pytest.approx(truth64, rel=1e-15)
    assert truth32 != pytest.approx(truth64, rel=0.1)  # the two points really differ
    for dtype in ("float32", "float64"):
        assert measure_one(shifted_square, "tape", "eager", dtype)["status"] == "ok"


def test_a_value_turned_into_a_python_number_is_refused_not_differentiated_as_a_constant():
    import math as pymath

    @case(inputs={"x": 2.0})
    def through_math(x, xp):
        return pymath.exp(float(x)) + x

    # math.exp(float(x)) would be a constant to any tracer: the true derivative e² + 1 cannot be followed
    row = measure_one(through_math, "tape", "eager", "float64")
    assert row["status"] == "error" and "Python number" in row["diagnosis"]


@pytest.mark.parametrize("c", [1.0, 1e8, 1e-8])
def test_a_zero_hessian_is_judged_the_same_at_any_scale(c):
    def scaled_by(factor):
        def affine(x, xp):
            return factor * (x[0] + 2 * x[1]) + factor * x[0] * 0.0
        return affine

    one = case(inputs={"x": [0.3, 0.7]}, name="affine")(scaled_by(c))
    # f is affine: the Hessian is exactly 0. Second differences of f round at eps·|f|/h², which scales
    # with c like the gradient does: judged against the gradient's size, the verdict cannot depend on c
    rows = [r for r in rows_of(one, methods=("symbolic", "finite"), order2=True) if r["order"] == 2]
    assert {r["status"] for r in rows} == {"ok"}
