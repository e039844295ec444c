"""Numerically hard cases (tag ``hard``): cancellation, naive forms, extreme magnitudes.

These are where exact methods stop being exact in floating point, and where the
diagnosis has to say why.
"""

import numpy as np

from diffbench import case


@case(inputs={"x": 1e-4}, tags=["hard", "cancellation"])
def one_minus_cos_naive(x, xp):
    """(1 − cos x)/x² near 0: 1 − cos x cancels, and so does every derivative formula of it."""
    return (1 - xp.cos(x)) / x**2


@case(inputs={"x": 1e-4}, tags=["hard", "cancellation"])
def one_minus_cos_stable(x, xp):
    """2·sin²(x/2)/x², the same function without the cancellation."""
    return 2 * xp.sin(x / 2) ** 2 / x**2


@case(inputs={"x": 1e-7}, tags=["hard", "cancellation"])
def log1p_ratio_naive(x, xp):
    """log(1 + x)/x at x = 1e-7: in float32 1 + x rounds to 1, so the value and gradient collapse."""
    return xp.log(1 + x) / x


@case(inputs={"x": 1e-7}, tags=["hard", "cancellation"])
def log1p_ratio_stable(x, xp):
    """log1p(x)/x: the value is right in float32; the derivative formula still cancels there."""
    return xp.log1p(x) / x


@case(inputs={"x": [1e-9, -2e-9, 3e-9]}, tags=["hard"])
def expm1_naive(x, xp):
    """Σ (exp(x) − 1)²: exp(x) − 1 loses every digit of tiny x in float32."""
    return xp.sum((xp.exp(x) - 1) ** 2)


@case(inputs={"x": [1e-9, -2e-9, 3e-9]}, tags=["hard"])
def expm1_stable(x, xp):
    """Σ expm1(x)²: the same function computed without cancellation."""
    return xp.sum(xp.expm1(x) ** 2)


@case(inputs={"x": [1e20, -3e19]}, tags=["hard", "overflow"])
def huge_magnitude(x, xp):
    """Σ x²: x² = 1e40 overflows float32 (max 3.4e38); float64 is fine."""
    return xp.sum(x**2)


@case(inputs={"x": [1e-30, 2e-30]}, tags=["hard", "underflow"])
def tiny_magnitude(x, xp):
    """Σ x²: x² = 1e-60 underflows float32 to 0, which blinds finite differences."""
    return xp.sum(x**2)


@case(inputs={"x": 89.0}, tags=["hard", "overflow"])
def float32_overflow(x, xp):
    """exp(x) at x = 89: beyond float32's largest exp argument (≈ 88.72)."""
    return xp.exp(x)


@case(inputs={"x": np.float64(110.0)}, tags=["hard", "underflow"])
def float32_underflow(x, xp):
    """exp(−x) at x = 110: 1.7e-48 is below float32's smallest subnormal, so value and gradient become 0."""
    return xp.exp(-x)
