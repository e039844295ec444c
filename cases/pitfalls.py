"""Pitfalls the TensorFlow articles warn about (tag ``pitfall``)."""

import numpy as np

from diffbench import case


@case(inputs={"x": 2.0, "y": 5.0}, tags=["pitfall", "unconnected"], expect={"tape": "none"})
def unused_input(x, y, xp):
    """x² with an input y that does not influence the output: TensorFlow returns None for y (truth 0)."""
    return x**2


@case(inputs={"x": -1.0}, tags=["pitfall", "where"], expect={"tape": "ok|nan"})
def where_nan_trap(x, xp):
    """where(x > 0, sqrt(x), 0) at x = −1: the value is 0, the true derivative 0.

    Reverse mode differentiates both branches and multiplies the unused one's
    derivative, 1/(2·sqrt(−1)) = NaN, by 0: NaN. Whether that surfaces depends on the
    TensorFlow version and mode (TensorFlow 2.21: eager and tf.function give 0, XLA
    and the second derivative give NaN). The fix is the double where:
    where(x > 0, sqrt(where(x > 0, x, 1)), 0).
    """
    return xp.where(x > 0, xp.sqrt(x), 0.0)


@case(inputs={"x": np.array(3)}, tags=["pitfall", "integer"], expect={"tape": "none"})
def integer_input(x, xp):
    """x² with x given as an integer array: TensorFlow does not differentiate integer tensors (truth 6)."""
    return x * x


@case(inputs={"x": 2.3}, tags=["pitfall", "rounding"], expect={"tape": "none"})
def round_inside(x, xp):
    """round(x)²: piecewise constant, so the true derivative is 0 here; TensorFlow's round has no gradient."""
    return xp.round(x) ** 2


@case(inputs={"x": [0.3, 2.0, -1.0]}, tags=["pitfall", "argmax"], expect={"tape": "none"})
def argmax_inside(x, xp):
    """The index of the largest input, as a number: piecewise constant (truth 0).

    TensorFlow has no gradient through argmax (None). ``xp.argmax`` is an integer that carries no gradient:
    SymPy and SymEngine decide it by the values at the point (index 1 here, with no tie, so it is constant
    nearby) and differentiate a constant; the reference records no dependency on it.
    """
    return 1.0 * xp.argmax(x)
