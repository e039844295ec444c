"""Finite differences at scale: Hessians of 100 inputs, steps that alias a fast oscillation, and batched
evaluation (one ``jax.vmap`` call for many stencil points) against one NumPy call per point.

Truths are independent: SciPy's ``rosen_der``/``rosen_hess``, derivatives by hand. Tolerances are the
method's own error model (``metrics.tolerance``: 100·eps^(4/5) for ``richardson``, 100·eps^(2/3) for
``central``, 100·eps^(1/2) for second differences). Batched and per-point values are not compared bit for
bit: JAX sums in another order and rounds exp/sin/log its own way, so f differs in its last bits
(``BATCH_ULPS``); both must meet the same truth within their own error estimates.
"""

import math

import numpy as np
import pytest
from scipy.optimize import rosen_der, rosen_hess

from diffbench import case
from diffbench.engines import Skip
from diffbench.engines.finite import (BATCHED, MAX_HESSIAN_INPUTS, PER_POINT, FiniteEngine, batched_function,
                                      differentiate, function_of, hessian_matrix)
from diffbench.metrics import tolerance


def relative(got, want):
    got, want = np.asarray(got, dtype=np.float64).ravel(), np.asarray(want, dtype=np.float64).ravel()
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def rosenbrock_case(n):
    @case(inputs={"x": list(np.linspace(-1.2, 1.5, n))}, name=f"rosenbrock_{n}")
    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    return rosenbrock


def batching_engine():
    engine = FiniteEngine()
    engine.evaluation = BATCHED
    return engine


def test_hessian_of_100_inputs_against_scipy():
    rosenbrock = rosenbrock_case(100)
    x = rosenbrock.inputs["x"]
    result = hessian_matrix(function_of(rosenbrock, "float64"), x.astype(np.float64))
    want = rosen_hess(x)
    assert relative(result.value, want) <= tolerance("finite", "central", "float64", order=2)
    # the error estimate covers the true error, entry by entry (the zero entries included)
    assert np.all(np.abs(result.value - want) <= result.error)


def test_the_engine_computes_hessians_up_to_its_budget_and_skips_past_it():
    assert MAX_HESSIAN_INPUTS >= 100
    engine = FiniteEngine()
    x = np.linspace(-1.2, 1.5, 100)
    assert relative(engine.hessian(rosenbrock_case(100), "central", "float64"), rosen_hess(x)) \
        <= tolerance("finite", "central", "float64", order=2)
    assert engine.last_hessian_info["evaluation"] == PER_POINT
    too_many = rosenbrock_case(MAX_HESSIAN_INPUTS + 1)
    with pytest.raises(Skip, match="Hessian budget"):
        engine.hessian(too_many, "central", "float64")


@case(inputs={"x": 3.0})
def sin_fast(x, xp):
    return xp.sin(50 * x)


def test_fast_oscillation_is_not_aliased():
    """From h = 0.5 the levels h, h/2, h/4 sit just short of 8π, 4π, 2π radians of sin(50x): aliased."""
    f = function_of(sin_fast, "float64")
    x = np.array([3.0])
    hess = hessian_matrix(f, x)
    want = -2500 * math.sin(150)  # (sin 50x)'' = −2500 sin 50x
    assert abs(hess.value[0, 0] - want) <= tolerance("finite", "central", "float64", order=2) * abs(want)
    assert abs(hess.value[0, 0] - want) <= hess.error[0, 0]
    grad = differentiate(f, x, "richardson")
    want = 50 * math.cos(150)
    assert abs(grad.value[0] - want) <= tolerance("finite", "richardson", "float64") * abs(want)
    assert abs(grad.value[0] - want) <= grad.error[0]


def test_default_rows_say_they_evaluated_per_point():
    prepared = FiniteEngine().prepare(rosenbrock_case(10), "central", "float64")
    assert prepared.info["evaluation"] == PER_POINT


@case(inputs={"x": [0.3, -1.1, 2.5, 0.7]})
def exp_sin(x, xp):
    return xp.sum(xp.exp(x) * xp.sin(x))


@case(inputs={"x": [2.0, 0.5, 3.0]})
def log_quadratic(x, xp):
    return xp.log(x @ x) + x[0] * x[-1]


def _truth(name, x):
    if name.startswith("rosenbrock"):
        return rosen_der(x)
    if name == "exp_sin":
        return np.exp(x) * (np.sin(x) + np.cos(x))  # (eˣ sin x)' elementwise
    grad = 2 * x / (x @ x)  # ∇ log(x·x) = 2x / x·x, plus ∇(x₀ x₋₁)
    grad[0] += x[-1]
    grad[-1] += x[0]
    return grad


@pytest.mark.parametrize("variant", ["central", "richardson", "forward"])
@pytest.mark.parametrize("which", ["rosenbrock_10", "exp_sin", "log_quadratic"])
def test_batched_and_per_point_gradients_agree(which, variant):
    pytest.importorskip("jax")
    chosen = {"rosenbrock_10": rosenbrock_case(10), "exp_sin": exp_sin, "log_quadratic": log_quadratic}[which]
    x = chosen.inputs["x"].astype(np.float64)
    per_point = FiniteEngine().prepare(chosen, variant, "float64")
    batched = batching_engine().prepare(chosen, variant, "float64")
    assert batched.info["evaluation"] == BATCHED and "note" not in batched.info
    want = _truth(chosen.name, x)
    for prepared in (per_point, batched):
        got = prepared.gradient()["x"]
        assert relative(got, want) <= tolerance("finite", variant, "float64")
    # both estimate their own error; the two results differ by no more than the two estimates together
    diff = relative(batched.gradient()["x"], per_point.gradient()["x"])
    assert diff <= batched.info["error_estimate"] + per_point.info["error_estimate"]
    # and the timed gradient is the same batched computation
    assert np.array_equal(batched.timed(), batched.gradient()["x"])


def test_batched_hessian_agrees_with_scipy():
    pytest.importorskip("jax")
    engine = batching_engine()
    got = engine.hessian(rosenbrock_case(20), "central", "float64")
    assert engine.last_hessian_info["evaluation"] == BATCHED
    assert relative(got, rosen_hess(np.linspace(-1.2, 1.5, 20))) <= tolerance("finite", "central", "float64", order=2)


@case(inputs={"x": 1e-3})
def log_small(x, xp):
    return xp.log(x)


def test_batched_rounds_shrink_steps_at_a_domain_boundary():
    """x − h < 0 from h = 0.25: the rounds must shrink the start as one point at a time does."""
    pytest.importorskip("jax")
    prepared = batching_engine().prepare(log_small, "richardson", "float64")
    assert prepared.info["evaluation"] == BATCHED
    assert relative(prepared.gradient()["x"], 1 / 1e-3) <= tolerance("finite", "richardson", "float64")
    assert "not finite" in prepared.info["note"]


@case(inputs={"x": [0.5, -2.0, 1.5]})
def branching(x, xp):
    # a Python branch on a value: fine in NumPy, impossible for a traced batch
    if x[0] > 0:
        return xp.sum(x**3)
    return xp.sum(x)


def test_a_case_that_cannot_batch_falls_back_to_one_call_per_point():
    pytest.importorskip("jax")
    batch, why = batched_function(branching, "float64")
    assert batch is None and "jax" in why
    prepared = batching_engine().prepare(branching, "central", "float64")
    assert prepared.info["evaluation"] == PER_POINT
    assert "batched evaluation not used" in prepared.info["note"]
    x = np.array([0.5, -2.0, 1.5])
    assert relative(prepared.gradient()["x"], 3 * x**2) <= tolerance("finite", "central", "float64")


def test_the_complex_step_is_never_batched():
    prepared = batching_engine().prepare(exp_sin, "complex_step", "float64")
    assert prepared.info["evaluation"] == PER_POINT
    assert "complex-safe" in prepared.info["note"]
