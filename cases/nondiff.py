"""Points where the function is not differentiable (tag ``nondiff``).

The reference reports ``undefined`` with both one-sided derivatives; every method's
row says which subgradient it picked.
"""

from diffbench import case


@case(inputs={"x": 0.0}, tags=["nondiff", "kink"], expect={"*": "undefined"})
def abs_at_zero(x, xp):
    """|x| at 0: left derivative −1, right derivative +1."""
    return xp.abs(x)


@case(inputs={"x": [0.0, 1.5]}, tags=["nondiff", "kink"], expect={"*": "undefined"})
def relu_at_zero(x, xp):
    """Σ max(x, 0) with one input exactly at 0."""
    return xp.sum(xp.maximum(x, 0.0))


@case(inputs={"x": [0.5, -1.5]}, tags=["nondiff"], expect={"tape-order2": "none"})
def relu_off_kink(x, xp):
    """Σ max(x, 0) away from 0: differentiable, every gradient is ok.

    Piecewise linear, so the true Hessian is 0; TensorFlow returns None for it.
    """
    return xp.sum(xp.maximum(x, 0.0))


@case(inputs={"x": 1.0}, tags=["nondiff", "kink"], expect={"*": "undefined"})
def where_branch(x, xp):
    """where(x > 1, x², x) at the switch x = 1: continuous, with slopes 1 (left) and 2 (right)."""
    return xp.where(x > 1.0, x**2, x)


@case(inputs={"x": 0.0}, tags=["nondiff", "singularity"], expect={"*": "undefined"})
def sqrt_at_zero(x, xp):
    """√x at 0: the derivative 1/(2√x) is infinite (a singularity)."""
    return xp.sqrt(x)


@case(inputs={"x": [0.0, 0.0]}, tags=["nondiff", "kink"], expect={"*": "undefined"})
def norm_at_zero(x, xp):
    """‖x‖₂ at the origin: a cone, one-sided slopes ±1 along every axis."""
    return xp.sqrt(xp.sum(x**2))
