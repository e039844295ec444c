"""Adversarial verdicts: each case's truth is derived by hand in the comment beside it and
evaluated here with mpmath (never with diffbench); the assertions state the *correct*
behaviour, so a case diffbench gets wrong fails.

They complement tests/test_verdicts.py with points chosen to fool each rule: ties whose
one-sided gradients agree, kinks and switches closer than any fixed step, cancelling
intermediates, subnormal and 1e-200 scales, native gradients wrong by tiny amounts.
"""

from __future__ import annotations


import mpmath
import numpy as np
import pytest

import diffbench
from diffbench import assert_gradients, case
from diffbench.reference import reference
from diffbench.results import Cause

from verdict_helpers import order2_rows, ref_flat, row, sixty_digits  # noqa: F401 - the fixture applies

pytestmark = pytest.mark.filterwarnings("ignore")


# =========================================================== A. switches that do not make a kink
# At a tie the tape keeps one side's partial (maximum → first argument, abs → sign(0) = 0);
# where the one-sided check then finds no kink, that one-sided partial is used as the truth.

def test_relu_identity_at_zero():
    @case(inputs={"x": 0.0})
    def relu_identity(x, xp):
        return xp.maximum(x, 0.0) - xp.maximum(-x, 0.0)

    # max(x,0) − max(−x,0) = x for every real x: f' = 1 everywhere, at 0 too.
    # SymPy: Heaviside(0)=1/2 twice → 1/2 + 1/2 = 1 (right); tf.maximum sends the tie's gradient to its
    # first argument on both terms → 1 − (−1) = 2 (wrong).
    assert ref_flat(relu_identity)[0] == 1.0
    assert row(relu_identity, "symbolic", "numpy")["status"] == "ok"
    assert row(relu_identity, "tape", "eager")["status"] == "inaccurate"


def test_max_plus_min_at_a_tie():
    @case(inputs={"x": [1.5, 1.5]})
    def max_plus_min(x, xp):
        return xp.maximum(x[0], x[1]) + xp.minimum(x[0], x[1])

    # max(a,b) + min(a,b) = a + b identically: ∇f = (1, 1) at the tie as anywhere.
    # tf.maximum/tf.minimum both send a tie to the first argument → (2, 0), wrong.
    np.testing.assert_array_equal(ref_flat(max_plus_min), [1.0, 1.0])
    assert row(max_plus_min, "symbolic", "numpy")["status"] == "ok"
    assert row(max_plus_min, "tape", "eager")["status"] == "inaccurate"


def test_abs_times_sign_is_the_identity():
    @case(inputs={"x": 0.0})
    def abs_sign(x, xp):
        return xp.abs(x) * xp.sign(x)

    # |x|·sign(x) = x for every x: f'(0) = 1. TensorFlow: d|x| = sign(0) = 0, d sign = 0 → 0, wrong.
    assert ref_flat(abs_sign)[0] == 1.0
    assert row(abs_sign, "tape", "eager")["status"] == "inaccurate"


# =========================================================== B. real kinks/jumps the check misses
@pytest.mark.parametrize("k", [0, 50])
def test_kink_inside_a_narrow_tent(k):
    # f(x) = |x| − ½|x − c| − ½|x + c|, c = 2^-100: for |x| < c, f = |x| − c (kink at 0: left −1, right +1);
    # for |x| > c, f ≡ 0. At x = 0 f is not differentiable. The one-sided probes (δ = 2^-40, 2^-60 with
    # s = 1 because x = 0) both land outside the tent and see f ≡ 0.  g(u) = f(u·2^-k) at u = 0 is the
    # same function with the inputs scaled by 2^k: for k = 50 the tent has width 2^-50 and is found.
    c = 2.0**-100

    @case(inputs={"x": 0.0}, name=f"tent_{k}")
    def tent(x, xp):
        y = x * 2.0**-k
        return xp.abs(y) - 0.5 * xp.abs(y - c) - 0.5 * xp.abs(y + c)

    # check the derivation: one-sided slopes at 0 in units of y
    with mpmath.workprec(400):
        f = lambda y: abs(y) - abs(y - c) / 2 - abs(y + c) / 2  # noqa: E731
        h = mpmath.mpf(2) ** -120
        assert (f(h) - f(0)) / h == 1 and (f(0) - f(-h)) / h == -1
    assert reference(tent).undefined is not None
    assert row(tent, "tape", "eager")["status"] == "undefined"


def test_kink_next_to_a_large_cancelling_term():
    @case(inputs={"x": 0.0})
    def abs_plus_flat(x, xp):
        return xp.abs(x) + 1e13 * (x - xp.sin(x))

    # 1e13·(x − sin x) = 1e13·x³/6 + …: smooth, slope 0 at 0 (its two paths, 1e13 and −1e13·cos 0, cancel).
    # |x| adds a kink: one-sided derivatives −1 and +1. Not differentiable, whatever the cancelling scale.
    with mpmath.workprec(300):
        g = lambda x: abs(x) + mpmath.mpf(10)**13 * (x - mpmath.sin(x))  # noqa: E731
        h = mpmath.mpf(2) ** -100
        assert mpmath.almosteq((g(h) - g(0)) / h, 1, 1e-20) and mpmath.almosteq((g(0) - g(-h)) / h, -1, 1e-20)
    assert reference(abs_plus_flat).undefined is not None
    assert row(abs_plus_flat, "tape", "eager")["status"] == "undefined"


def test_jump_in_a_function_with_large_cancelling_intermediates():
    @case(inputs={"x": 0.0, "y": 1.0})
    def floor_plus_zero(x, y, xp):
        return xp.floor(x) + 1e30 * (y - y)

    # y − y = 0 exactly (also in float64), so f = floor(x): it jumps from −1 to 0 at x = 0 — no gradient.
    assert reference(floor_plus_zero).undefined is not None
    assert row(floor_plus_zero, "symbolic", "numpy")["status"] == "undefined"


def test_second_derivatives_of_abs_of_a_product_at_the_origin():
    @case(inputs={"x": [0.0, 0.0]})
    def abs_product(x, xp):
        return xp.abs(x[0] * x[1])

    # |x0·x1| ≤ (x0² + x1²)/2 → differentiable at 0 with ∇f = 0 (order 1 ok). But at (0, t), t ≠ 0,
    # ∂f/∂x0 has one-sided values ±|t|: the gradient does not exist on the axes, so ∂²f/∂x1∂x0 at the
    # origin does not exist: order-2 rows must be undefined.
    assert reference(abs_product).undefined is None
    assert row(abs_product, "tape", "eager")["status"] == "ok"
    assert {r["status"] for r in order2_rows(abs_product)} == {"undefined"}


# =========================================================== C. diagnoses that must name the real cause
def test_a_jump_is_not_described_as_a_kink_with_nan_slopes():
    @case(inputs={"x": 3.0})
    def x_floor(x, xp):
        return x * xp.floor(x)

    # x·floor(x): 6 just left of 3, 9 at and right of 3: a jump of 3 → undefined; the text must say the
    # function jumps (floor), not "a kink: left derivative nan, right derivative nan".
    r = row(x_floor, "tape", "eager")
    assert r["status"] == "undefined"
    assert "jump" in r["diagnosis"] and "nan" not in r["diagnosis"]


def test_a_continuous_kink_next_to_another_is_not_called_a_jump():
    @case(inputs={"x": 0.0})
    def two_kinks(x, xp):
        return xp.abs(x) - xp.abs(x - 1e-30)

    # continuous (a difference of continuous functions): left slope 0, right slope 2 on (0, 1e-30).
    # Not differentiable (right); but it does not jump.
    r = row(two_kinks, "tape", "eager")
    assert r["status"] == "undefined"
    assert "jump" not in reference(two_kinks).undefined
    assert "nan" not in r["diagnosis"]


@pytest.mark.filterwarnings("ignore")
def test_float32_point_on_the_other_side_of_a_switch_is_not_blamed_on_tensorflow():
    @case(inputs={"x": 0.1})
    def where_at_tenth(x, xp):
        return xp.where(x > 0.1, 3 * x, x)

    # float32 point: fl32(0.1) = 0.100000001490116… > 0.1, so f = 3x there and f' = 3 (reference right).
    # TensorFlow compares with 0.1 rounded to float32 (a tie → False) and returns 1. The gradient is
    # wrong, but TensorFlow's gradient formula for the branch it took is right: the cause is that the
    # point lies within float32 rounding (1.5e-9) of the switch. "built-in gradient ... is wrong" is not it.
    assert float(np.float32(0.1)) > 0.1
    r = row(where_at_tenth, "tape", "eager", "float32")
    assert r["status"] == "undefined"  # the float32 program holds 0.1 as fl32(0.1): x sits on its switch


def test_nan_from_the_discarded_branch_of_where_names_where():
    @case(inputs={"x": 0.0})
    def flat_join(x, xp):
        return xp.where(x > 0, xp.exp(-1 / x), 0.0)

    # exp(−1/x) joins 0 C∞ at 0: f' = 0. Reverse mode multiplies the discarded branch's derivative
    # exp(−1/x)/x² = 0·inf = NaN by 0 → NaN: the tape is nan, and the cause is the where().
    r0 = reference(flat_join)
    assert r0.undefined is None and r0.order2_undefined is None and ref_flat(flat_join)[0] == 0.0
    assert row(flat_join, "symbolic", "numpy")["status"] == "ok"
    r = row(flat_join, "tape", "eager")
    assert r["status"] == "nan" and "where" in r["diagnosis"]


# =========================================================== D. finite differences: scale invariance
@pytest.mark.parametrize("c", [1.0, 1e-200])
def test_stencil_crossing_a_kink_1e300_away_is_inaccurate_at_any_scale(c):
    @case(inputs={"x": 0.0}, name=f"near_kink_{c:g}")
    def near_kink(x, xp):
        return c * xp.where(x > 1e-300, x, -x)

    # at x = 0 < 1e-300, f = −c·x locally: f'(0) = −c (smooth here). Central differences with h ≈ 6e-6
    # straddle the switch: (c·h − c·h)/(2h) = 0, wrong by 100 %, whatever c is (for c = 1e-200 the
    # squared norm of the error underflows float64 unless it is scaled first).
    assert ref_flat(near_kink)[0] == -c
    assert row(near_kink, "tape", "eager")["status"] == "ok"
    r = row(near_kink, "finite", "central")
    assert r["status"] == "inaccurate" and "crosses a kink" in r["diagnosis"]


def test_relative_error_of_a_tiny_gradient_is_not_zero():
    @case(inputs={"x": 1e200})
    def asinh_huge(x, xp):
        return xp.asinh(x)

    # d asinh/dx = 1/sqrt(1 + x²) = 1e-200 (normal in float64). SymPy's 1/sqrt(x**2 + 1) overflows → 0:
    # the symbolic row is inaccurate with relative error exactly 1 (not 0).
    with mpmath.workdps(60):
        truth = float(1 / mpmath.sqrt(1 + mpmath.mpf(1e200) ** 2))
    assert ref_flat(asinh_huge)[0] == pytest.approx(truth, rel=1e-15)
    r = row(asinh_huge, "symbolic", "numpy")
    assert r["status"] == "inaccurate" and "overflow" in r["diagnosis"]
    assert r["rel_error"] == pytest.approx(1.0)
    assert row(asinh_huge, "tape", "eager")["status"] == "ok"
    assert row(asinh_huge, "finite", "complex_step")["status"] == "ok"


# =========================================================== E. custom gradients
def test_native_gradient_slightly_wrong_where_the_xp_formula_cancels():
    @case(inputs={"x": 1.0})
    def square_written_badly(x, xp):
        return (x + 1e8) ** 2 - 1e16 - 2e8 * x

    @square_written_badly.tensorflow
    def _(x):
        import tensorflow as tf

        @tf.custom_gradient
        def f(a):
            return a * a, lambda dy: dy * 2.0 * a * (1 + 1e-6)

        return f(x)

    # f = x² exactly (the xp formula cancels terms of size 1e16): f'(1) = 2. The native code computes x²
    # directly; its gradient 2.000002 is wrong by 1e-6 relative, 4500× float64's 1000·eps. The xp formula's
    # cancelling scale (4e8) does not describe the native code's rounding: the tape on the xp formula itself
    # errs far less than 1e-6 here, so nothing forgives the native error.
    assert ref_flat(square_written_badly)[0] == 2.0
    assert row(square_written_badly, "tape", "eager")["status"] == "inaccurate"


def _one_component_wrong(rel, dtype_tol_case):
    @case(inputs={"x": [0.7, -1.3, 2.1]}, name=dtype_tol_case)
    def sin_x_x(x, xp):
        return xp.sum(xp.sin(x) * x)

    @sin_x_x.tensorflow
    def _(x):
        import tensorflow as tf

        @tf.custom_gradient
        def f(a):
            def grad(dy):
                return dy * (tf.sin(a) + a * tf.cos(a)) * tf.constant([1.0, 1.0 + rel, 1.0], dtype=a.dtype)
            return tf.reduce_sum(tf.sin(a) * a), grad

        return f(x)

    return sin_x_x


def test_custom_gradient_wrong_by_1e11_in_one_component_float64():
    # ∇ = sin x + x cos x componentwise (no cancellation: scale = |sin x| + |x cos x|); x[1] off by
    # 1e-11 relative = 45× float64's 1000·eps → inaccurate, blamed on the custom gradient.
    c = _one_component_wrong(1e-11, "cg64")
    with mpmath.workdps(40):
        truth = [float(mpmath.sin(v) + v * mpmath.cos(v)) for v in (0.7, -1.3, 2.1)]
    np.testing.assert_allclose(ref_flat(c), truth, rtol=1e-15)
    r = row(c, "tape", "eager")
    assert r["status"] == "inaccurate" and "custom_gradient" in r["diagnosis"]


def test_custom_gradient_wrong_by_1e3_in_one_component_float32():
    # same, x[1] off by 1e-3 relative in float32: 8× float32's 1000·eps → inaccurate.
    c = _one_component_wrong(1e-3, "cg32")
    r = row(c, "tape", "eager", "float32")
    assert r["status"] == "inaccurate" and "custom_gradient" in r["diagnosis"]


def test_custom_gradient_right_to_rounding_is_ok():
    # x[1] off by 1e-15 relative: ≈ 5 eps, rounding — ok.
    c = _one_component_wrong(1e-15, "cg_ok")
    assert row(c, "tape", "eager")["status"] == "ok"


def test_assert_gradients_catches_a_one_component_error_without_reference():
    import tensorflow as tf

    def wrong(x):
        @tf.custom_gradient
        def f(a):
            return tf.reduce_sum(a * a), lambda dy: dy * 2 * a * tf.constant([1.0, 1.0 + 1e-7, 1.0], dtype=a.dtype)
        return f(x)

    def right(x):
        return tf.reduce_sum(tf.sin(x) * x)

    # ∇ sum(x²) = 2x; component 1 off by 1e-7 relative → must fail; sin(x)·x is TensorFlow's own → passes.
    with pytest.raises(AssertionError):
        assert_gradients(wrong, {"x": np.array([0.5, -1.5, 2.0])})
    assert_gradients(right, {"x": np.array([0.5, -1.5, 2.0])})


# =========================================================== F. kinks that are found (should pass)
def test_max_with_a_tie_is_undefined():
    @case(inputs={"x": [2.0, 2.0, 1.0]})
    def max_tie(x, xp):
        return xp.max(x)

    # max at a tie of x0, x1: one-sided ∂/∂x0 = 0 (left) and 1 (right) → no gradient.
    assert {row(max_tie, m, v)["status"] for m, v in (("symbolic", "numpy"), ("tape", "eager"))} == {"undefined"}


def test_max_1e300_off_a_tie_is_smooth():
    @case(inputs={"x": [1e-300, 0.0]})
    def max_near_tie(x, xp):
        return xp.maximum(x[0], x[1]) * 3.0

    # x0 > x1 strictly: f = 3·x0 near the point, ∇f = (3, 0).
    np.testing.assert_array_equal(ref_flat(max_near_tie), [3.0, 0.0])
    assert row(max_near_tie, "tape", "eager")["status"] == "ok"


def test_abs_difference_at_equal_inputs():
    @case(inputs={"x": [0.3, 0.3]})
    def abs_diff(x, xp):
        return xp.abs(x[0] - x[1])

    # |x0 − x1| at x0 = x1: one-sided ∂/∂x0 = ∓1 → undefined.
    ref = reference(abs_diff)
    assert ref.undefined and {(k.left, k.right) for k in ref.kinks} >= {(-1.0, 1.0)}
    assert row(abs_diff, "tape", "eager")["status"] == "undefined"


def test_norm_of_the_zero_vector():
    @case(inputs={"x": [0.0, 0.0, 0.0]})
    def norm0(x, xp):
        return xp.sqrt(xp.sum(x**2))

    # ‖x‖ is a cone at 0: directional derivative 1 in every direction, so no gradient.
    assert reference(norm0).undefined is not None
    assert row(norm0, "tape", "eager")["status"] == "undefined"


def test_relu_network_with_one_preactivation_exactly_zero():
    @case(inputs={"x": [0.25, 0.25]})
    def relu_net(x, xp):
        w = xp.asarray([[1.0, -1.0], [0.5, 2.0]])
        return xp.sum(xp.maximum(w @ x, 0.0) * xp.asarray([2.0, -1.0]))

    # unit 0: x0 − x1 = 0 exactly (kink); unit 1: 0.625 > 0. ∂/∂x0: right 2·1 − 0.5 = 1.5, left −0.5.
    ref = reference(relu_net)
    assert ref.undefined and (ref.kinks[0].left, ref.kinks[0].right) == (-0.5, 1.5)
    assert row(relu_net, "tape", "eager")["status"] == "undefined"


def test_where_c0_join_is_a_kink():
    @case(inputs={"x": 0.0})
    def c0(x, xp):
        return xp.where(x > 0, 2 * x, x)

    # slopes 1 (left) and 2 (right): kink.
    assert row(c0, "tape", "eager")["status"] == "undefined"


def test_where_c1_join_order1_ok_order2_undefined():
    @case(inputs={"x": 0.0})
    def c1(x, xp):
        return xp.where(x > 0, xp.exp(x), 1 + x)

    # f'(0) = 1 from both sides; f'' = 1 (right) vs 0 (left): C¹ not C².
    assert reference(c1).undefined is None and ref_flat(c1)[0] == 1.0
    assert row(c1, "tape", "eager")["status"] == "ok"
    assert {r["status"] for r in order2_rows(c1)} == {"undefined"}


def test_floor_just_below_an_integer():
    @case(inputs={"x": 3.0 - 2.0**-51})
    def x_floor_below(x, xp):
        return x * xp.floor(x)

    # floor = 2 near x = 3 − 2^-51: f = 2x, f' = 2. Central differences straddle the jump at 3.
    assert ref_flat(x_floor_below)[0] == 2.0
    assert row(x_floor_below, "tape", "eager")["status"] == "ok"
    r = row(x_floor_below, "finite", "central")
    assert r["status"] == "inaccurate" and "crosses" in r["diagnosis"]


# =========================================================== G. powers, products, reductions
def test_integer_powers_of_a_negative_base():
    @case(inputs={"x": -2.0})
    def negpow(x, xp):
        return x**3 + x ** (-2)

    # 3x² − 2x⁻³ at −2 = 12 + 0.25 = 12.25
    assert ref_flat(negpow)[0] == 12.25
    assert row(negpow, "tape", "eager")["status"] == "ok"
    assert row(negpow, "symbolic", "numpy")["status"] == "ok"


def test_zero_base_with_a_variable_exponent():
    @case(inputs={"x": 0.0, "y": 3.0})
    def zeropow(x, y, xp):
        return x**y

    # ∂x = y·x^(y−1) = 0, ∂y = x^y·log x → 0 (0^y ≡ 0 for y > 0). TensorFlow: (0, 0) → ok.
    np.testing.assert_array_equal(ref_flat(zeropow), [0.0, 0.0])
    assert row(zeropow, "tape", "eager")["status"] == "ok"


def test_prod_with_one_zero_and_its_hessian():
    @case(inputs={"x": [0.0, 2.0, 3.0]})
    def prod0(x, xp):
        return xp.prod(x)

    # ∇ = (x1x2, x0x2, x0x1) = (6, 0, 0); H has (0,1) = x2 = 3, (0,2) = x1 = 2, (1,2) = x0 = 0.
    np.testing.assert_array_equal(ref_flat(prod0), [6.0, 0.0, 0.0])
    assert row(prod0, "tape", "eager")["status"] == "ok"
    tape2 = [r for r in order2_rows(prod0, methods=("tape",))][0]
    assert tape2["status"] == "inaccurate" and "reduce_prod" in tape2["diagnosis"]
    assert "custom_gradient" not in tape2["diagnosis"]


def test_logsumexp_tie_with_huge_logits():
    @case(inputs={"x": [1000.0, 1000.0, -3.0]})
    def lse(x, xp):
        m = xp.max(x)
        return m + xp.log(xp.sum(xp.exp(x - m)))

    # LSE is smooth; ∇ = softmax = (e^1000, e^1000, e^-3)/S ≈ (0.5, 0.5, 5.1e-447 → 0 in float64).
    with mpmath.workdps(50):
        s = 2 * mpmath.exp(1000) + mpmath.exp(-3)
        truth = [float(mpmath.exp(1000) / s)] * 2 + [float(mpmath.exp(-3) / s)]
    np.testing.assert_allclose(ref_flat(lse), truth, rtol=1e-15)
    assert reference(lse).undefined is None
    for m, v in (("symbolic", "numpy"), ("tape", "eager"), ("finite", "central")):
        assert row(lse, m, v)["status"] == "ok"


def test_naive_logsumexp_overflows_and_says_so():
    @case(inputs={"x": [1000.0, 999.0, -5.0]})
    def lse_naive(x, xp):
        return xp.log(xp.sum(xp.exp(x)))

    # truth softmax = (1/(1+e^-1), e^-1/(1+e^-1), ~0) = (0.731…, 0.269…, 0); float64 exp(1000) = inf → nan
    r = row(lse_naive, "tape", "eager")
    assert r["status"] == "nan" and "overflow in exp" in r["diagnosis"]


def test_norm_with_huge_entries_overflows_and_says_so():
    @case(inputs={"x": [1e200, 1e200]})
    def hypot(x, xp):
        return xp.sqrt(xp.sum(x**2))

    # ∇‖x‖ = x/‖x‖ = (1/√2, 1/√2); x² overflows in float64 → TensorFlow returns 0s.
    np.testing.assert_allclose(ref_flat(hypot), [2**-0.5] * 2, rtol=1e-15)
    r = row(hypot, "tape", "eager")
    assert r["status"] == "inaccurate" and "overflow" in r["diagnosis"] and "square" in r["diagnosis"]


# =========================================================== H. stationary points, cancellation, float32
def test_stationary_point_of_a_scaled_square():
    @case(inputs={"x": 1.0})
    def flat_min(x, xp):
        return 1e-8 * (x - 1.0) ** 2

    # f' = 2e-8·(x − 1) = 0 exactly; forward differences err by h·f''/2 ≈ 1.5e-8·1e-8: truncation, ok.
    for m, v in (("tape", "eager"), ("finite", "forward"), ("finite", "central"), ("finite", "richardson")):
        assert row(flat_min, m, v)["status"] == "ok", (m, v)


def test_cos_at_float_pi_is_tiny_not_zero():
    @case(inputs={"x": np.pi})
    def cos_pi(x, xp):
        return xp.cos(x)

    # −sin(fl(π)) = −(π − fl(π)) + … = −1.2246467991473532e-16
    with mpmath.workdps(60):
        truth = float(-mpmath.sin(mpmath.mpf(np.pi)))
    assert ref_flat(cos_pi)[0] == pytest.approx(truth, rel=1e-15)
    assert row(cos_pi, "tape", "eager")["status"] == "ok"
    assert row(cos_pi, "symbolic", "numpy")["status"] == "ok"


def test_cancellation_in_the_derivative_is_the_formulas_fault():
    @case(inputs={"x": 1e-5})
    def sin_minus_x(x, xp):
        return xp.sin(x) - x

    # f' = cos x − 1 = −5e-11, computed by every method as a difference of terms of size 1: scale 2.
    # The verdict contract changed: the scale no longer forgives the error in the status (ok means the
    # gradient is accurate), it names the cause. fl64(cos 1e-5) − 1 is exact (Sterbenz) but fl64(cos 1e-5)
    # errs by up to 2⁻⁵⁴, i.e. ~1e-7 of f' = −5e-11: inaccurate, and the formula's fault.
    with mpmath.workdps(50):
        truth = float(mpmath.cos(mpmath.mpf(1e-5)) - 1)
        computed = float(mpmath.mpf(float(mpmath.cos(mpmath.mpf(1e-5)))) - 1)  # cos rounded to float64, then − 1
    assert ref_flat(sin_minus_x)[0] == pytest.approx(truth, rel=1e-14)
    assert abs(computed - truth) > 1e3 * np.finfo(np.float64).eps * abs(truth)
    for method, variant in (("tape", "eager"), ("symbolic", "numpy")):
        r = row(sin_minus_x, method, variant)
        assert r["status"] == "inaccurate"
        assert r["cause"] == Cause.FORMULA_CANCELLATION


def test_cancellation_in_the_values_is_blamed_on_the_formula():
    @case(inputs={"x": 1e-4})
    def cos_ratio(x, xp):
        return (1 - xp.cos(x)) / x**2

    # f = (1 − cos x)/x², f' = (x sin x − 2(1 − cos x))/x³ ≈ −x/12 = −8.33e-6; 1 − cos(1e-4) in float64
    # keeps ~8 digits → the computed gradient is wrong for every formula-following method.
    with mpmath.workdps(60):
        truth = float(mpmath.diff(lambda t: (1 - mpmath.cos(t)) / t**2, mpmath.mpf(1e-4)))
    assert ref_flat(cos_ratio)[0] == pytest.approx(truth, rel=1e-14)
    r = row(cos_ratio, "tape", "eager")
    assert r["status"] == "inaccurate" and "cancellation in the function's own values" in r["diagnosis"]


def test_float32_rows_are_judged_at_the_float32_point():
    @case(inputs={"x": 0.1})
    def tanh_sq(x, xp):
        return xp.tanh(x) * x**2

    # at x32 = fl32(0.1): f' = sech²(x)·x² + 2x·tanh(x)
    x32 = mpmath.mpf(float(np.float32(0.1)))
    truth = float(mpmath.sech(x32) ** 2 * x32**2 + 2 * x32 * mpmath.tanh(x32))
    assert ref_flat(tanh_sq, "float32")[0] == pytest.approx(truth, rel=1e-15)
    assert row(tanh_sq, "tape", "eager", "float32")["status"] == "ok"
    assert row(tanh_sq, "symbolic", "numpy", "float32")["status"] == "ok"


@pytest.mark.parametrize("k", [-60, 60])
def test_power_of_two_input_scaling_keeps_the_verdicts(k):
    def f(x, xp):
        return xp.sum(xp.sin(x) * x) + xp.prod(x)

    x0 = np.array([0.7, -1.3, 2.1])
    base = case(inputs={"x": x0}, name="base")(f)
    scaled = case(inputs={"x": x0 * 2.0**k}, name=f"scaled_{k}")(lambda x, xp: f(x * 2.0**-k, xp))
    for m, v in (("symbolic", "numpy"), ("tape", "eager")):
        assert row(base, m, v)["status"] == row(scaled, m, v)["status"] == "ok"


def test_run_and_measure_one_agree():
    @case(inputs={"x": 0.0})
    def relu_identity_run(x, xp):
        return xp.maximum(x, 0.0) - xp.maximum(-x, 0.0)

    # same truth as test_relu_identity_at_zero (f = x, f' = 1): the tape's 2 is wrong in run() too.
    table = diffbench.run([relu_identity_run], methods=["tape"], dtypes=["float64"])
    statuses = set(table[(table["method"] == "tape") & (table["order"] == 1)]["status"])
    assert statuses == {"inaccurate"}


# =========================================================== I. limits at switches, Hessians near switches
def test_where_patched_removable_singularity_has_the_limit_derivative():
    @case(inputs={"x": 0.0})
    def expm1_ratio(x, xp):
        safe = xp.where(x == 0, 1.0, x)
        return xp.where(x == 0, 1.0, xp.expm1(safe) / safe)

    # f(x) = (e^x − 1)/x, f(0) = 1: continuous, f'(0) = lim (f(h) − 1)/h = lim (e^h − 1 − h)/h² = 1/2.
    # The tape at the point sees the constant branch: 0, wrong. TensorFlow also says 0 → inaccurate.
    with mpmath.workdps(60):
        h = mpmath.mpf(10) ** -25
        assert mpmath.almosteq((mpmath.expm1(h) / h - 1) / h, 0.5, 1e-20)
    assert ref_flat(expm1_ratio)[0] == 0.5
    assert row(expm1_ratio, "tape", "eager")["status"] == "inaccurate"


def test_hessian_next_to_a_switch_1e300_away():
    @case(inputs={"x": 0.0})
    def near_c1(x, xp):
        return xp.where(x > 1e-300, x**2, -(x**2))

    # at 0 (< 1e-300) f = −x² on a neighbourhood of size 1e-300: f' = 0, f'' = −2. SymPy and the nested tapes
    # both return −2 (right). The reference Hessian's differences (step 2^-64, 2^-128) reach past 1e-300.
    from diffbench.reference import reference_hessian

    assert reference(near_c1).order2_undefined is None
    assert float(reference_hessian(near_c1)[0, 0]) == -2.0
    assert {r["status"] for r in order2_rows(near_c1)} == {"ok"}


def test_float32_rounding_makes_a_tie():
    @case(inputs={"x": [0.1, 0.10000000000000002]})
    def max2(x, xp):
        return xp.maximum(x[0], x[1])

    # float64: x1 > x0 → ∇ = (0, 1); float32: both round to fl32(0.1) → a tie → undefined.
    assert np.float32(0.1) == np.float32(0.10000000000000002)
    assert row(max2, "tape", "eager", "float64")["status"] == "ok"
    assert row(max2, "tape", "eager", "float32")["status"] == "undefined"


def test_finite_differences_at_a_flat_inflection_are_not_a_false_alarm():
    @case(inputs={"x": 0.0})
    def cube(x, xp):
        return x**3

    # f' = 3x² = 0, f'' = 0 at 0: forward differences give h² ≈ 2.2e-16, central h² ≈ 3.7e-11 —
    # pure truncation (f'''·h²/6), as good as these schemes get: judged against the gradient one
    # point-scale away (3u² at x = u), they are well within the finite-difference tolerance.
    for v in ("forward", "central"):
        assert row(cube, "finite", v)["status"] == "ok", v


def test_atan2_of_tiny_inputs_blames_the_builtin():
    @case(inputs={"y": 1e-200, "x": 1e-200})
    def angle(y, x, xp):
        return xp.atan2(y, x)

    # ∂/∂y = x/(x² + y²) = 5e199, ∂/∂x = −y/(x² + y²) = −5e199 (normal floats); x² + y² underflows to 0
    # in float64, so TensorFlow's formula divides by 0: the cause is tf.atan2's built-in gradient.
    np.testing.assert_allclose(ref_flat(angle), [5e199, -5e199], rtol=1e-15)
    r = row(angle, "tape", "eager")
    assert r["status"] in ("inf", "nan", "inaccurate")
    assert "atan2" in r["diagnosis"] and "custom_gradient" not in r["diagnosis"]


def test_second_derivatives_of_abs_of_a_difference_of_squares():
    @case(inputs={"x": [0.0, 0.0]})
    def abs_sq_diff(x, xp):
        return xp.abs(x[0] ** 2 - x[1] ** 2)

    # |x0² − x1²| ≤ ‖x‖² → ∇f(0) = 0 (order 1 ok). Second directional derivatives at 0: along e0 and e1 both
    # +2, along (1, ±1)/√2 both 0. A symmetric H would need H00 = H11 = 2 and 2 ± 2·H01 = 0 for both signs:
    # impossible, so the Hessian does not exist → order-2 rows undefined (diffbench: reference diag(2, 2),
    # and the tape's/SymPy's 0 called inaccurate).
    assert row(abs_sq_diff, "tape", "eager")["status"] == "ok"
    assert {r["status"] for r in order2_rows(abs_sq_diff)} == {"undefined"}


@pytest.mark.parametrize("c", [1.0, 1e-310])
def test_scaling_f_into_the_subnormals_keeps_the_verdicts(c):
    @case(inputs={"x": [0.7, -1.3, 2.1]}, name=f"subnormal_{c:g}")
    def scaled(x, xp):
        return c * xp.sum(xp.sin(x) * xp.exp(x) * x)

    # ∇ = c·e^x·(sin x + x sin x + x cos x): for c = 1e-310 every component is subnormal; SymPy/NumPy
    # returns it to within one subnormal ulp (4.9e-324, measured: diffs (0, 0, −1) ulp), the best float64
    # holds. Its verdict must not change with c (eps·sᵢ underflows to 0, so any nonzero difference counts as
    # infinitely many eps). (TensorFlow's CPU kernels flush subnormals to zero: its 0s are rightly inaccurate.)
    with mpmath.workdps(40):
        truth = [float(c * mpmath.exp(v) * (mpmath.sin(v) + v * mpmath.sin(v) + v * mpmath.cos(v)))
                 for v in (0.7, -1.3, 2.1)]
    np.testing.assert_allclose(ref_flat(scaled), truth, rtol=1e-12)
    assert row(scaled, "symbolic", "numpy")["status"] == "ok"


def test_wrong_custom_gradient_on_a_cancelling_formula_is_blamed_on_the_custom_gradient():
    @case(inputs={"x": 1e-4})
    def cos_ratio_native(x, xp):
        return (1 - xp.cos(x)) / x**2

    @cos_ratio_native.tensorflow
    def _(x):
        import tensorflow as tf

        @tf.custom_gradient
        def f(a):
            # stable value 2 sin²(a/2)/a²; backward returns 2·(−a/12): twice the true slope
            return 2 * tf.sin(a / 2) ** 2 / a**2, lambda dy: dy * 2.0 * (-a / 12)

        return f(x)

    # f' = (x sin x − 2(1 − cos x))/x³ ≈ −x/12 = −8.33e-6. The native code has no cancellation; its
    # backward pass is off by 100 %: the diagnosis must name the custom gradient, not "cancellation in
    # the function's own values … rewrite it as 2·sin²(x/2)" (which the native code already is).
    with mpmath.workdps(60):
        truth = float(mpmath.diff(lambda t: (1 - mpmath.cos(t)) / t**2, mpmath.mpf(1e-4)))
    assert ref_flat(cos_ratio_native)[0] == pytest.approx(truth, rel=1e-14)
    r = row(cos_ratio_native, "tape", "eager")
    assert r["status"] == "inaccurate"
    assert "custom_gradient" in r["diagnosis"] and "cancellation" not in r["diagnosis"]


@pytest.mark.parametrize("x, y, truth, status", [
    # x^y at (0, 1): ∂x = y·x^(y−1) = 1·0^0 = 1; ∂y = 0 (0^y ≡ 0 for y > 0)
    (0.0, 1.0, [1.0, 0.0], "ok"),
    # (−2)^y at y = 3 with y an input: not real for non-integer y near 3 → no gradient
    (-2.0, 3.0, None, "undefined"),
])
def test_powers_with_a_variable_exponent(x, y, truth, status):
    @case(inputs={"x": x, "y": y}, name=f"pow_{x}_{y}")
    def powxy(x, y, xp):
        return x**y

    if truth is not None:
        np.testing.assert_array_equal(ref_flat(powxy), truth)
    assert row(powxy, "tape", "eager")["status"] == status
