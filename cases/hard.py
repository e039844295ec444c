"""Numerically hard cases (tag ``hard``): cancellation, naive forms, extreme magnitudes.

These are where exact methods stop being exact in floating point, and where the
diagnosis has to say why.
"""

from diffbench import case


@case(inputs={"x": 1e-4}, tags=["hard", "cancellation"], expect={"*": "inaccurate"})
def one_minus_cos_naive(x, xp):
    """(1 − cos x)/x² near 0: 1 − cos x cancels, and so does every derivative formula of it."""
    return (1 - xp.cos(x)) / x**2


@case(inputs={"x": 1e-4}, tags=["hard", "cancellation"],
      expect={"order1": "inaccurate", "symbolic-order2": "inaccurate", "tape-order2": "inaccurate"})
def one_minus_cos_stable(x, xp):
    """2·sin²(x/2)/x², the same function without the cancellation in its value.

    Its derivative, sin(x)/x² − 4·sin²(x/2)/x³, still subtracts two terms of size 1/x = 1e4
    to get f′ = −x/12 + x³/180 − … ≈ −8.333e-6 (the series of (1 − cos x)/x² = 1/2 − x²/24 + x⁴/720).
    Every exact method follows that formula and rounds at eps·2e4: about 3e-7 of f′ in float64, all
    of it in float32. The gradient is then wrong beyond 1000·eps, so the exact rows (symbolic, tape,
    complex step) are ``inaccurate`` with cause ``formula-cancellation`` (they were ``ok`` while the
    cancellation scale was forgiven in the status); finite differences see only f and stay
    ``inaccurate`` by their own tolerances.
    """
    return 2 * xp.sin(x / 2) ** 2 / x**2


@case(inputs={"x": 1e-7}, tags=["hard", "cancellation"],
      expect={"*": "inaccurate", "finite-central-float32-order1": "ok", "finite-richardson": "ok",
              "tape-function": "ok|inaccurate", "tape-forward": "ok|inaccurate"})
def log1p_ratio_naive(x, xp):
    """log(1 + x)/x at x = 1e-7: in float32 1 + x rounds to 1, so the value and gradient collapse.

    TensorFlow's graph optimiser may rewrite log(1 + x) as log1p(x) inside tf.function, which
    then comes out right: either outcome is accepted for the traced variants.
    """
    return xp.log(1 + x) / x


@case(inputs={"x": 1e-7}, tags=["hard", "cancellation"],
      expect={"symbolic-order1": "inaccurate", "tape-order1": "inaccurate", "finite-complex_step": "inaccurate",
              "symbolic-order2": "inaccurate", "tape-order2": "inaccurate"})
def log1p_ratio_stable(x, xp):
    """log1p(x)/x: the value is right in float32. The derivative 1/((1+x)x) − log1p(x)/x² cancels
    two terms of size 1/x = 1e7 to get f′ = −1/2 + 2x/3 − … ≈ −0.49999993: exact methods round at
    eps·2e7, 7e-9 of f′ in float64 and all of it in float32, so the symbolic and tape rows are
    ``inaccurate`` with cause ``formula-cancellation`` (they were ``ok`` while the cancellation
    scale was forgiven in the status). Finite differences of the accurate f are ``ok``, except the
    complex step, which also follows the formula. Second derivatives, judged normwise, cancel terms
    of size 1/x² and are ``inaccurate``."""
    return xp.log1p(x) / x


@case(inputs={"x": [1e-9, -2e-9, 3e-9]}, tags=["hard"],
      expect={"order1": "inaccurate", "tape-function": "ok|inaccurate", "tape-forward": "ok|inaccurate"})
def expm1_naive(x, xp):
    """Σ (exp(x) − 1)²: exp(x) − 1 loses every digit of tiny x in float32 (and half in float64).

    TensorFlow's graph optimiser may rewrite exp(x) − 1 inside tf.function, which then
    comes out right: either outcome is accepted for the traced tape variants (function,
    forward).
    """
    return xp.sum((xp.exp(x) - 1) ** 2)


@case(inputs={"x": [1e-9, -2e-9, 3e-9]}, tags=["hard"],
      expect={"finite-forward": "inaccurate", "finite-central-order1": "inaccurate", "finite-richardson": "inaccurate"})
def expm1_stable(x, xp):
    """Σ expm1(x)²: the same function computed without cancellation.

    Finite differences still fail: their step, c·max(|x|, 1), is far larger than
    |x| ≈ 1e-9, so they see the function at the scale of the step.
    """
    return xp.sum(xp.expm1(x) ** 2)


@case(inputs={"x": [1e20, -3e19]}, tags=["hard", "overflow"],
      expect={"finite-float32": "nan", "finite-complex_step-float32-order1": "ok", "tape-forward-float32": "nan"})
def huge_magnitude(x, xp):
    """Σ x²: x² = 1e40 overflows float32 (max 3.4e38); float64 is fine.

    The gradient 2x never overflows, so reverse mode and the symbolic gradient are right
    in float32 while everything that evaluates f (finite differences, forward mode's
    primal) is not; the complex step survives because its imaginary part stays small.
    """
    return xp.sum(x**2)


@case(inputs={"x": [1e-30, 2e-30]}, tags=["hard", "underflow"],
      expect={"finite-order1": "inaccurate", "finite-complex_step-float64": "ok"})
def tiny_magnitude(x, xp):
    """Σ x²: x² = 1e-60 underflows float32 to 0, which blinds finite differences."""
    return xp.sum(x**2)


@case(inputs={"x": 89.0}, tags=["hard", "overflow"],
      expect={"float32": "inf", "finite-forward-float32": "nan", "finite-richardson-float32": "nan",
              "finite-central-float32-order2": "nan", "finite-central-float64": "inaccurate",
              "finite-central-float64-order2": "ok"})
def float32_overflow(x, xp):
    """exp(x) at x = 89: beyond float32's largest exp argument (≈ 88.72)."""
    return xp.exp(x)


@case(inputs={"x": 110.0}, tags=["hard", "underflow"],
      expect={"finite-central-float64": "inaccurate", "finite-central-float64-order2": "ok"})
def float32_underflow(x, xp):
    """exp(−x) at x = 110: the gradient −1.7e-48 is below float32's smallest subnormal (1.4e-45).

    In float32 every method returns 0, the nearest float32 to the truth: right, as right as float32
    can be (errors below the smallest subnormal cannot be represented). In float64 the value is a
    normal number and central differences lose it to rounding.
    """
    return xp.exp(-x)


@case(inputs={"x": 0.7318}, tags=["hard", "rounding"],
      expect={"finite": "inaccurate", "finite-complex_step": "ok", "finite-central-float64-order2": "ok"})
def large_offset(x, xp):
    """1e5 + x²: the value is 5e4 times the gradient, so the chosen finite-difference
    steps lose the difference to rounding; in float64 a larger step is exact (the
    central difference of a quadratic has no truncation error)."""
    return 1e5 + x**2


@case(inputs={"x": 1e-9}, tags=["hard", "cancellation"],
      expect={"order1": "inaccurate", "symbolic-order2": "inaccurate", "tape-order2": "inaccurate"})
def sinc_near_zero(x, xp):
    """sin(x)/x at x = 1e-9: f is well-conditioned, its derivative's formula is not.

    f′(x) = cos(x)/x − sin(x)/x² = (x·cos x − sin x)/x²; with cos x = 1 − x²/2 + x⁴/24 − … and
    sin x = x − x³/6 + x⁵/120 − …, x·cos x − sin x = −x³/3 + x⁵/30 − …, so f′(x) = −x/3 + x³/30 − …
    ≈ −3.333e-10. Every exact method follows the formula and subtracts two terms of size 1/x = 1e9,
    rounding at eps·1e9 ≈ 2e-7 in float64 (1e2 in float32): hundreds of times the truth. The gradient is
    wrong, so every exact row is ``inaccurate`` (cause ``formula-cancellation``: the diagnosis names the
    terms and the series 1 − x²/6 + x⁴/120 as the rewrite). Finite differences see only f ≈ 1 − x²/6 and
    lose −x/3 to rounding of f: ``inaccurate`` by their own tolerances (Richardson 2e-6 against 3e-11).
    Second derivatives: f″ = −1/3 + x²/10 ≈ −1/3, while the symbolic and nested-tape formulas
    (2·sin x/x³ − 2·cos x/x² − sin x/x) cancel terms of size 1e18: ``inaccurate``; second differences
    of f, which is smooth on the scale of their steps, are ``ok``.
    """
    return xp.sin(x) / x


@case(inputs={"x": 0.3}, tags=["hard", "conditioning"],
      expect={"*": "inaccurate", "symbolic-numpy*": "skipped", "symbolic-tensorflow": "skipped",
              "symbolic-symengine-float32-order2": "nan|inaccurate", "finite-float32-order2": "nan|inaccurate"})
def logistic_map(x, xp):
    """40 steps of the logistic map x ← 3.9·x·(1 − x) from x = 0.3, written x ← 0.975 − 3.9·(x − ½)²
    (the same map, with x once per step: 3.9·x·(1 − x) doubles SymPy's expression tree at every step).

    The derivative is the product Π 3.9·(1 − 2xₖ) over the trajectory, ≈ 2.65e9 here: f is
    ill-conditioned (‖f′‖·|x|/|f| ≈ 1e9), and rounding each step by one unit moves the rest of the
    trajectory by the same factor. In float64 every exact method is off by about 1e-7 relative; in
    float32 (eps 1.2e-7) the trajectory is lost by step 40 and the sign can come out wrong. Either way
    the gradient is wrong: ``inaccurate``, cause ``conditioning``, with the amplification in the text.
    The truths at the float64 point 0.3 (≈ 4.71e9) and at the float32 point with float32 constants
    (≈ 2.65e9) differ because the map amplifies their difference of 1e-8 as much.
    SymPy's differentiation recurses once per step and would exceed Python's recursion limit: its rows are
    ``skipped`` with that reason (SymEngine differentiates it); second derivatives by SymEngine and by second differences in float32
    come out NaN or wrong, like the gradients.
    """
    for _ in range(40):
        x = 0.975 - 3.9 * (x - 0.5) ** 2
    return x
