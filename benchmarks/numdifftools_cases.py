"""Test functions and points ported from numdifftools' own test suite, as diffbench cases.

Sources (numdifftools 0.11, ``tests/test_numdifftools.py`` and ``example_functions.py``):
the first-derivative test of every function in ``example_functions.function_names`` at
x = 0.5; ``Gradient`` tests (``sum(x**2)`` at (1, 2, 3), Rosenbrock at (2, 3), issue 39's
1/(exp(x0) + cos(x1) + 10) at (1, 2)); ``Derivative`` tests (cube at 2, exp at 0, sin on
13 points of [0, 2π], sinh at 0, log at 0.001); ``Hessian`` and ``Hessdiag`` tests
(x·y·z + exp(x)·y at (3, 5, 7), cos(x − y) at (0, 0), cos(x·y) and sin(x·y) at (3, 5),
x0 + x1² + x2³ at (1, 2, 3)). Vector-valued functions of the peer's tests are split into
one case per component, since a case returns a scalar.

``GRADIENT`` and ``HESSIAN`` name the cases each half of the benchmark uses.
"""

from __future__ import annotations

import numpy as np

from diffbench import case


def _scalar(name: str, body, x: float = 0.5):
    """A one-input case named ``name`` evaluating ``body(x, xp)``."""

    def func(x, xp):
        return body(x, xp)

    func.__name__ = name
    return case(inputs={"x": x}, tags=["numdifftools"])(func)


_UNARY = {
    "cos": lambda x, xp: xp.cos(x), "sin": lambda x, xp: xp.sin(x), "tan": lambda x, xp: xp.tan(x),
    "cosh": lambda x, xp: xp.cosh(x), "sinh": lambda x, xp: xp.sinh(x), "tanh": lambda x, xp: xp.tanh(x),
    "arcsinh": lambda x, xp: xp.asinh(x), "exp": lambda x, xp: xp.exp(x), "expm1": lambda x, xp: xp.expm1(x),
    "exp2": lambda x, xp: xp.pow(2.0, x), "square": lambda x, xp: xp.square(x), "sqrt": lambda x, xp: xp.sqrt(x),
    "log": lambda x, xp: xp.log(x), "log1p": lambda x, xp: xp.log1p(x), "log10": lambda x, xp: xp.log10(x),
    "log2": lambda x, xp: xp.log2(x), "arccos": lambda x, xp: xp.acos(x), "arcsin": lambda x, xp: xp.asin(x),
    "arctan": lambda x, xp: xp.atan(x),
}

FIRST_DERIVATIVES = [_scalar(f"nd_{name}_half", body) for name, body in _UNARY.items()]


@case(inputs={"x": [1.0, 2.0, 3.0]}, tags=["numdifftools"])
def nd_sum_of_squares(x, xp):
    return xp.sum(x**2)


@case(inputs={"x": [2.0, 3.0]}, tags=["numdifftools"])
def nd_rosen_2_3(x, xp):
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@case(inputs={"x": [1.0, 2.0]}, tags=["numdifftools"])
def nd_issue_39(x, xp):
    return 1.0 / (xp.exp(x[0]) + xp.cos(x[1]) + 10)


@case(inputs={"x": [2.0, 2.0, 2.0, 2.0]}, tags=["numdifftools"])
def nd_cube(x, xp):
    return xp.sum(x * x * x)


@case(inputs={"x": list(np.linspace(0, 2.0 * np.pi, 13))}, tags=["numdifftools"])
def nd_sin_13(x, xp):
    return xp.sum(xp.sin(x))


nd_exp_0 = _scalar("nd_exp_0", lambda x, xp: xp.exp(x), 0.0)
nd_sinh_0 = _scalar("nd_sinh_0", lambda x, xp: xp.sinh(x), 0.0)
nd_log_1e3 = _scalar("nd_log_1e3", lambda x, xp: xp.log(x), 0.001)


@case(inputs={"x": [3.0, 5.0, 7.0]}, tags=["numdifftools"])
def nd_xyz_exp(x, xp):
    return x[0] * x[1] * x[2] + xp.exp(x[0]) * x[1]


@case(inputs={"x": [0.0, 0.0]}, tags=["numdifftools"])
def nd_cos_x_minus_y(x, xp):
    return xp.cos(x[0] - x[1])


@case(inputs={"x": [3.0, 5.0]}, tags=["numdifftools"])
def nd_cos_xy(x, xp):
    return xp.cos(x[0] * x[1])


@case(inputs={"x": [3.0, 5.0]}, tags=["numdifftools"])
def nd_sin_xy(x, xp):
    return xp.sin(x[0] * x[1])


@case(inputs={"x": [1.0, 2.0, 3.0]}, tags=["numdifftools"])
def nd_hessdiag(x, xp):
    return x[0] + x[1] ** 2 + x[2] ** 3


GRADIENT = FIRST_DERIVATIVES + [nd_sum_of_squares, nd_rosen_2_3, nd_issue_39, nd_cube, nd_sin_13, nd_exp_0,
                                nd_sinh_0, nd_log_1e3, nd_xyz_exp, nd_cos_xy, nd_sin_xy, nd_hessdiag]
HESSIAN = [nd_xyz_exp, nd_cos_x_minus_y, nd_cos_xy, nd_sin_xy, nd_hessdiag, nd_sum_of_squares, nd_rosen_2_3,
           nd_issue_39, nd_cube]
