"""The reference's ball arithmetic: each true component lies in its ball, and the ball is narrow.

Truths are closed forms written out in this file and evaluated in exact rationals
(``fractions.Fraction``: the inputs are floats, so dyadic rationals) where the function is
rational, and in mpmath at 1000 digits (independent of python-flint) where it is not.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from diffbench import case
from diffbench import mptape
from diffbench.reference import CERTIFY_BITS, reference


def _fraction(value) -> Fraction:
    """An exact arb value (a ball's midpoint or radius) as a Fraction."""
    if value.is_zero():
        return Fraction(0)
    man, exp = value.man_exp()
    return Fraction(int(man)) * Fraction(2) ** int(exp)


def _contains(ball, truth: Fraction) -> bool:
    """|mid − truth| ≤ rad, decided in exact rationals."""
    return abs(_fraction(ball.mid()) - truth) <= _fraction(ball.rad())


def _balls(ref, bits: int = 192):
    return ref.tape(ref.point, bits).gradient_balls


def test_rational_gradient_lies_in_narrow_balls():
    @case(inputs={"x": 0.1, "y": 3.0})
    def rational(x, y, xp):
        return x * x * y + x / y

    ref = reference(rational)
    x, y = Fraction(0.1), Fraction(3.0)
    # ∂/∂x (x²y + x/y) = 2xy + 1/y ; ∂/∂y = x² − x/y²
    truth = [2 * x * y + 1 / y, x * x - x / (y * y)]
    for ball, want in zip(_balls(ref), truth):
        assert _contains(ball, want)
        assert _fraction(ball.rad()) <= Fraction(2) ** -CERTIFY_BITS * abs(want)
    assert ref.certified.all() and ref.uncertain is None
    assert ref.label.startswith("arb-")
    assert np.all(ref.radius <= 2.0 ** -CERTIFY_BITS)
    # the float64 values are the rationals rounded once
    assert ref.values["x"] == float(truth[0]) and ref.values["y"] == float(truth[1])


def test_transcendental_gradient_lies_in_its_ball():
    @case(inputs={"x": 0.5, "y": -1.25})
    def smooth(x, y, xp):
        return xp.exp(xp.sin(x)) * xp.tanh(y) + xp.log1p(x * x) * xp.erf(y)

    ref = reference(smooth)
    with mpmath.workdps(1000):
        x, y = mpmath.mpf(0.5), mpmath.mpf(-1.25)
        # ∂/∂x = cos x·e^{sin x}·tanh y + 2x/(1 + x²)·erf y ; ∂/∂y = e^{sin x}·sech² y + log(1 + x²)·2/√π·e^{−y²}
        dx = mpmath.cos(x) * mpmath.exp(mpmath.sin(x)) * mpmath.tanh(y) + 2 * x / (1 + x * x) * mpmath.erf(y)
        dy = (mpmath.exp(mpmath.sin(x)) * mpmath.sech(y) ** 2
              + mpmath.log1p(x * x) * 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-y * y))
        truth = [(-1) ** v._mpf_[0] * Fraction(int(v._mpf_[1])) * Fraction(2) ** int(v._mpf_[2]) for v in (dx, dy)]
    # the 1000-digit truths err by ~1e-1000, far inside any 192-bit ball's radius
    for ball, want in zip(_balls(ref), truth):
        assert _contains(ball, want)
        assert _fraction(ball.rad()) <= Fraction(2) ** -CERTIFY_BITS * abs(want)
    assert ref.certified.all()


def test_agreeing_precisions_can_be_wrong_and_the_ball_says_so():
    # f(x) = x·((x + 2⁴⁰⁰) − 2⁴⁰⁰) = x² exactly, so f'(x) = 2x. Carried at 192 or at 384 bits, x + 2⁴⁰⁰ rounds
    # x away: the first factor is 0 at both precisions and the chain rule gives x·1 + 0 = x at both. Two
    # precisions agree on the wrong value; the ball of x + 2⁴⁰⁰ is 2²⁰⁸ wide at 192 bits and says so.
    big = 2.0 ** 400

    @case(inputs={"x": 1.5})
    def absorbed(x, xp):
        return x * ((x + big) - big)

    def naive(bits: int):
        with mpmath.workprec(bits):
            x = mpmath.mpf(1.5)
            inner = (x + mpmath.mpf(big)) - mpmath.mpf(big)
            return x * 1 + inner * 1  # ∂(x·u)/∂x along both paths: u + x·∂u/∂x with ∂u/∂x = 1

    assert naive(192) == naive(384) == 1.5  # agree, and are wrong by half
    ball = _balls(reference(absorbed))[0]
    assert not ball.rad() <= 2.0 ** -CERTIFY_BITS * abs(ball.mid())  # the 192-bit ball proves nothing
    ref = reference(absorbed)
    assert ref.values["x"] == 3.0 and ref.certified.all() and ref.bits > 384


def test_a_tie_hidden_below_the_working_precision_is_found():
    # P(x, y) = (x + 2²⁰⁰)² − 2⁴⁰⁰ − 2²⁰¹ − y is exactly 0 at x = y = 1 ((1 + 2²⁰⁰)² = 2⁴⁰⁰ + 2²⁰¹ + 1), but the
    # square needs 401 bits: at 192 or 384 bits rounding leaves P ≠ 0, so |P| would look smooth there, with
    # slope ±∂P. Its ball holds 0 until the precision carries every bit; then the kink of
    # |P| is decided exactly: ∂|P|/∂x jumps between ±2(1 + 2²⁰⁰).
    @case(inputs={"x": 1.0, "y": 1.0})
    def hidden_kink(x, y, xp):
        return xp.abs((x + 2.0 ** 200) ** 2 - 2.0 ** 400 - 2.0 ** 201 - y)

    for bits in (192, 384):
        with mpmath.workprec(bits):
            rounded = (mpmath.mpf(1) + mpmath.mpf(2) ** 200) ** 2 - mpmath.mpf(2) ** 400 - mpmath.mpf(2) ** 201 - 1
        assert rounded != 0  # what an evaluation at this precision sees (−2²⁰¹ at 192 bits, −1 at 384)
    ref = reference(hidden_kink)
    assert ref.undefined is not None and ref.kinks
    assert ref.ties == ["abs"]


def test_switch_on_an_exact_rational_tie():
    # |3x − 0.3| at x = 0.1: 3·0.1 (the double) is not the double 0.3, so this is no tie: the slope is the sign
    # of 3·Fraction(0.1) − Fraction(0.3), decided in rationals here
    @case(inputs={"x": 0.1})
    def near(x, xp):
        return xp.abs(3 * x - 0.3)

    sign = 1 if 3 * Fraction(0.1) - Fraction(0.3) > 0 else -1
    ref = reference(near)
    assert ref.undefined is None and ref.values["x"] == 3.0 * sign


def test_a_tie_through_quotients_is_proven_not_guessed():
    # x/y and z/w at (1, 3, 2, 6) are both 1/3, which no binary ball holds exactly: |x/y − z/w| has a kink
    # there, with one-sided slopes ∓1/y = ∓1/3 along x (and ∓z/w² = ∓1/18 along w); the tie must be proven
    # from the quotients' denominators (1/3 − 2/6 = 0 exactly), not read off a midpoint
    @case(inputs={"x": 1.0, "y": 3.0, "z": 2.0, "w": 6.0})
    def quotients(x, y, z, w, xp):
        return xp.abs(x / y - z / w)

    ref = reference(quotients)
    assert ref.undefined is not None and "kink" in ref.undefined
    kink = next(k for k in ref.kinks if k.label == "x")
    assert (kink.left, kink.right) == pytest.approx((-1 / 3, 1 / 3), rel=1e-12)
    run = mptape.evaluate(quotients.func, [(), (), (), ()], [mpmath.mpf(v) for v in (1, 3, 2, 6)], 192)
    assert [(s.op, s.proven) for s in run.switches] == [("abs", True)] and run.unresolved == 0

    # max(x/3 + y/7, z/21) at (1, 1, 10): 1/3 + 1/7 = 10/21 exactly, a tie of two rationals with odd denominators
    @case(inputs={"x": 1.0, "y": 1.0, "z": 10.0})
    def sevenths(x, y, z, xp):
        return xp.maximum(x / 3 + y / 7, z / 21)

    run = mptape.evaluate(sevenths.func, [(), (), ()], [mpmath.mpf(v) for v in (1, 1, 10)], 192)
    assert [(s.op, s.proven) for s in run.switches] == [("maximum", True)]

    # one unit in the last place off the tie: no switch at all (2 + 2⁻⁵¹ over 6 is not 1/3)
    @case(inputs={"x": 1.0, "y": 3.0, "z": 2.0 + 2.0**-51, "w": 6.0})
    def near_quotients(x, y, z, w, xp):
        return xp.abs(x / y - z / w)

    assert reference(near_quotients).undefined is None


def test_matrix_operations_are_single_nodes_with_exact_adjoints():
    a, b, c, d = 2.0, 0.5, -1.0, 3.0
    rhs = [1.0, -2.0]

    @case(inputs={"A": [[a, b], [c, d]], "r": rhs})
    def linear(A, r, xp):
        return xp.sum(xp.linalg.solve(A, r)) + xp.linalg.det(A) + xp.sum(xp.linalg.inv(A))

    F = [[Fraction(a), Fraction(b)], [Fraction(c), Fraction(d)]]
    det = F[0][0] * F[1][1] - F[0][1] * F[1][0]
    inv = [[F[1][1] / det, -F[0][1] / det], [-F[1][0] / det, F[0][0] / det]]
    x = [inv[i][0] * Fraction(rhs[0]) + inv[i][1] * Fraction(rhs[1]) for i in range(2)]
    # Σ solve: r̄ = A⁻ᵀ·1, Ā = −r̄·xᵀ.  det: Ā = det·A⁻ᵀ.  Σ inv: Ā = −A⁻ᵀ·11ᵀ·A⁻ᵀ, i.e. −(col sums)(row sums)
    rbar = [inv[0][i] + inv[1][i] for i in range(2)]
    col = [inv[0][i] + inv[1][i] for i in range(2)]  # (A⁻ᵀ1)_i = Σ_k inv[k][i]
    row = [inv[j][0] + inv[j][1] for j in range(2)]  # (1ᵀA⁻ᵀ)_j = Σ_k inv[j][k]
    dA = [[-rbar[i] * x[j] + det * inv[j][i] - col[i] * row[j] for j in range(2)] for i in range(2)]
    truth = [dA[0][0], dA[0][1], dA[1][0], dA[1][1], rbar[0], rbar[1]]
    ref = reference(linear)
    for ball, want in zip(_balls(ref), truth):
        assert _contains(ball, want)
    assert ref.certified.all()
    assert {"linalg.solve", "linalg.det", "linalg.inv"} <= ref.ops


def test_matrix_product_is_one_node_not_one_per_element():
    n = 40
    matrix = np.random.default_rng(3).standard_normal((n, n))

    @case(inputs={"x": np.linspace(-1, 1, n)})
    def quadratic(x, xp):
        return x @ (xp.asarray(matrix) @ x)

    ref = reference(quadratic)
    evaluation = ref.tape(ref.point, 192)
    # element by element, A @ x alone would be n² = 1600 products; as matrix nodes the tape holds the inputs,
    # the n outputs of A @ x, and the one output of x @ (A x)
    assert len(evaluation.nodes) <= 2 * n + 2
    x = np.linspace(-1, 1, n)
    truth = (matrix + matrix.T) @ x  # float64 closed form, ~1e-15 relative
    np.testing.assert_allclose(ref.values["x"], truth, rtol=1e-12, atol=1e-12)


def test_fallback_to_mpmath_is_named_and_certified_by_agreement(monkeypatch):
    monkeypatch.delitem(mptape.ARB_FUNCTIONS, "erf")

    @case(inputs={"x": 0.5})
    def error_function(x, xp):
        return xp.erf(x) * x

    ref = reference(error_function)
    # d/dx x·erf(x) = erf(x) + x·2/√π·e^{−x²}
    with mpmath.workdps(60):
        truth = mpmath.erf(0.5) + 0.5 * 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-0.25)
    assert ref.values["x"] == pytest.approx(float(truth), rel=1e-15)
    assert ref.fallback == {"erf"}
    assert ref.label.startswith("mpmath-2prec-")
    assert ref.worst_radius is None and np.isnan(ref.radius).all()


def test_tie_at_a_differentiable_point_settles():
    # v·relu(w·x + b) at (0, 1, 1, −1): the ReLU's argument is exactly 0, but |f(p)| ≤ |v|·|w·x + b| is second
    # order around the point, so the gradient exists and is 0 in every component
    @case(inputs={"v": 0.0, "w": 1.0, "x": 1.0, "b": -1.0})
    def gated(v, w, x, b, xp):
        return v * xp.maximum(w * x + b, 0.0)

    ref = reference(gated)
    assert ref.undefined is None and ref.uncertain is None
    assert all(float(ref.values[k]) == 0.0 for k in "vwxb")


def test_every_namespace_operation_is_on_the_tape_by_name():
    # Σ cumprod(x) = x₀ + x₀x₁: gradient (1 + x₁, x₀) = (1, 2) at (2, 0)
    @case(inputs={"x": [2.0, 0.0]})
    def cumulative(x, xp):
        return xp.sum(xp.cumulative_prod(x))

    ref = reference(cumulative)
    assert "cumulative_prod" in ref.ops and "sum" in ref.ops
    np.testing.assert_array_equal(ref.values["x"], [1.0, 2.0])


def test_negative_base_with_a_varying_exponent_is_named():
    # ∂(x**y)/∂y = x**y·log x needs log(−2): no real derivative along y, though x**3 is real
    @case(inputs={"x": -2.0, "y": 3.0})
    def power(x, y, xp):
        return x ** y

    ref = reference(power)
    assert ref.undefined is not None
    assert "log of the negative base x = -2" in ref.undefined and "integer y" in ref.undefined
    assert "0·∞" not in ref.undefined
    assert math.isnan(float(ref.exact[1]))
