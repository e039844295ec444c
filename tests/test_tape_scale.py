"""The tape engine past a handful of inputs: forward mode in one vectorised pass, Hessians to 100+ inputs.

Every expected value comes from SciPy (``rosen_der``, ``rosen_hess``, ``expm_frechet``) or is derived by
hand in the comment next to it.
"""

import numpy as np
import pytest
import scipy.linalg
from scipy.optimize import rosen_der, rosen_hess

import diffbench
from diffbench import case
from diffbench.engines import NoGradient, OverBudget, Skip, get_engine
from diffbench.engines import tape as tape_module


def rosenbrock_of(n):
    @case(inputs={"x": np.linspace(-1.5, 1.5, n)})
    def rosenbrock(x, xp):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    return rosenbrock


def forward(one_case, dtype="float64"):
    prepared = get_engine("tape").prepare(one_case, "forward", dtype)
    return prepared, prepared.gradient()


def test_budgets_cover_a_thousand_forward_inputs_and_a_hundred_hessian_inputs():
    assert tape_module.MAX_FORWARD_INPUTS >= 1000
    assert tape_module.MAX_HESSIAN_INPUTS >= 100


@pytest.mark.parametrize("n", [50, 300])
def test_forward_rosenbrock_float64_against_scipy(n):
    rosen = rosenbrock_of(n)
    prepared, got = forward(rosen)
    want = rosen_der(rosen.inputs["x"])
    assert prepared.info["evaluation"] == "vectorized"
    assert got["x"].shape == (n,) and got["x"].dtype == np.float64
    # components reach ~2e3 and cancel within a term by ~1e3: a few ulps of that scale
    np.testing.assert_allclose(got["x"], want, rtol=1e-13, atol=1e-12 * np.max(np.abs(want)))


@pytest.mark.parametrize("n", [50, 300])
def test_forward_rosenbrock_float32_against_scipy(n):
    rosen = rosenbrock_of(n)
    _, got = forward(rosen, "float32")
    # judged at the point as float32 holds it; float32 arithmetic is good to ~1e-6 of the largest term
    point = rosen.inputs["x"].astype(np.float32).astype(np.float64)
    want = rosen_der(point)
    assert got["x"].dtype == np.float32
    np.testing.assert_allclose(got["x"], want, rtol=1e-5, atol=1e-5 * np.max(np.abs(want)))


@case(inputs={"A": [[0.3, -0.2, 0.5], [0.1, 0.4, -0.7]], "b": [1.0, -1.0, 0.5]})
def matrix_and_vector(A, b, xp):
    return xp.sum(xp.tanh(A @ b)) + xp.sum(b**3)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-13), ("float32", 1e-5)])
def test_forward_two_inputs_of_different_shapes_by_hand(dtype, rtol):
    A = np.array([[0.3, -0.2, 0.5], [0.1, 0.4, -0.7]])
    b = np.array([1.0, -1.0, 0.5])
    # f = Σ tanh(Ab) + Σ b³:  ∂f/∂A = s bᵀ with s = 1 − tanh²(Ab);  ∂f/∂b = Aᵀ s + 3b²
    s = 1 - np.tanh(A @ b) ** 2
    _, got = forward(matrix_and_vector, dtype)
    assert got["A"].shape == (2, 3) and got["b"].shape == (3,)
    np.testing.assert_allclose(got["A"], np.outer(s, b), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got["b"], A.T @ s + 3 * b**2, rtol=rtol, atol=rtol)


@case(inputs={"W": np.linspace(-0.8, 0.9, 15).reshape(5, 3), "c": [0.2, -0.4, 0.6, 0.1, -0.3], "v": 0.7})
def mlp_ish(W, c, v, xp):
    x = xp.asarray([0.5, -1.0, 2.0])
    return v * xp.sum(xp.tanh(W @ x + c) ** 2)


def test_forward_with_21_inputs_is_measured_by_hand():
    W = np.linspace(-0.8, 0.9, 15).reshape(5, 3)
    c = np.array([0.2, -0.4, 0.6, 0.1, -0.3])
    v, x = 0.7, np.array([0.5, -1.0, 2.0])
    # f = v Σ tanh(z)², z = Wx + c:  ∂f/∂z = 2v tanh(z)(1 − tanh²(z)) = g;  ∂f/∂W = g xᵀ, ∂f/∂c = g,
    # ∂f/∂v = Σ tanh(z)²
    t = np.tanh(W @ x + c)
    g = 2 * v * t * (1 - t**2)
    assert mlp_ish.size == 21 > 8
    _, got = forward(mlp_ish)
    np.testing.assert_allclose(got["W"], np.outer(g, x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got["c"], g, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got["v"], np.sum(t**2), rtol=1e-13)


@case(inputs={"x": np.linspace(0.1, 2.0, 20)})
def sum_of_logs(x, xp):
    return xp.sum(xp.log(x) * x)


def test_harness_measures_forward_mode_on_20_inputs():
    df = diffbench.run([sum_of_logs], methods=["tape"], dtypes=["float64"], variants={"tape": ["forward"]})
    row = df[(df.variant == "forward") & (df.order == 1)].iloc[0]
    # d/dx x log x = log x + 1, checked by the harness against its certified reference
    assert row["status"] == "ok", row["diagnosis"]
    assert row["n_inputs"] == 20
    assert row["time_median_s"] > 0 and row["f_time_s"] > 0


def test_harness_forward_time_covers_the_whole_batched_pass():
    # time_median_s is the time of Prepared.timed: one call must return every input's derivative
    prepared = get_engine("tape").prepare(sum_of_logs, "forward", "float64")
    out = np.asarray(prepared.timed())
    np.testing.assert_allclose(out, np.log(sum_of_logs.inputs["x"]) + 1, rtol=1e-14)
    assert prepared.check_stable() is None


def test_forward_over_its_budget_is_skipped_with_the_reason():
    too_many = rosenbrock_of(tape_module.MAX_FORWARD_INPUTS + 1)
    with pytest.raises(Skip, match=rf"over the budget of {tape_module.MAX_FORWARD_INPUTS} .*MAX_FORWARD_INPUTS"):
        get_engine("tape").prepare(too_many, "forward", "float64")


@case(inputs={"x": [0.3, -0.2]})
def unrolled_steps(x, xp):
    # 50 unrolled steps of y ← y + 0.001·sin(y): a Python loop that tracing replays op by op
    y = x
    for _ in range(50):
        y = y + 0.001 * xp.sin(y)
    return xp.sum(y * y)


def test_traced_variants_predicted_past_the_tracing_budget_are_skipped_before_tracing(monkeypatch):
    from diffbench.results import Cause

    # a budget below what even this loop's tracing is predicted to cost (TRACE_COST × its eager first call)
    monkeypatch.setattr(tape_module, "MAX_TRACE_S", 1e-9)
    df = diffbench.run([unrolled_steps], methods=["tape"], dtypes=["float64"], timing=False)
    first = df[df.order == 1].set_index("variant")
    assert first.loc["eager", "status"] == "ok", first.loc["eager", "diagnosis"]
    for variant in ("function", "xla", "forward"):
        assert first.loc[variant, "status"] == "skipped", first.loc[variant, "diagnosis"]
        assert first.loc[variant, "cause"] == Cause.NOT_APPLICABLE
        assert "eager gradient's first call took" in first.loc[variant, "diagnosis"]
        assert "MAX_TRACE_S" in first.loc[variant, "diagnosis"]
    hessian = df[df.order == 2].iloc[0]
    assert hessian["status"] == "skipped" and "MAX_TRACE_S" in hessian["diagnosis"]
    # within the budget every variant traces, and gets the gradient the loop's chain rule gives
    monkeypatch.setattr(tape_module, "MAX_TRACE_S", 60.0)
    df = diffbench.run([unrolled_steps], methods=["tape"], dtypes=["float64"], timing=False)
    assert set(df.status) == {"ok"}, df[["variant", "order", "status", "diagnosis"]]


def _energy(y, xp):
    return xp.sum(y * y * y)


@case(inputs={"x": [0.3, -0.2]})
def steps_with_a_gradient_inside(x, xp):
    # 5 steps of y ← y − 0.01·∇E(y), E = Σ y³: ∇E by xp.grad, a tape inside the tape
    y = x
    for _ in range(5):
        y = y - 0.01 * xp.grad(_energy)(y)
    return xp.sum(y * y)


def test_a_case_with_a_tape_inside_is_predicted_at_the_nested_xla_cost():
    # the eager gradient records that the case opened nested tapes; XLA's prediction then uses
    # TRACE_COST_NESTED (100×, measured past 95× on the particle) instead of TRACE_COST (50×)
    engine = get_engine("tape")
    engine.prepare(steps_with_a_gradient_inside, "eager", "float64")
    assert steps_with_a_gradient_inside.__dict__.get("_tape_nested") is True
    engine.prepare(unrolled_steps, "eager", "float64")
    assert not unrolled_steps.__dict__.get("_tape_nested")
    # a first call of 1 s: 50 s predicted for a plain case (within 60 s), 100 s for a nested one (skipped)
    for one in (steps_with_a_gradient_inside, unrolled_steps):
        one.__dict__["_tape_eager_s"] = {("float64", "CPU"): 1.0}
    tape_module._check_trace_cost(unrolled_steps, "xla", "float64", "CPU")
    with pytest.raises(OverBudget, match=r"about 100 s \(100 times .*TRACE_COST_NESTED"):
        tape_module._check_trace_cost(steps_with_a_gradient_inside, "xla", "float64", "CPU")
    # the other variants keep their ratios
    tape_module._check_trace_cost(steps_with_a_gradient_inside, "function", "float64", "CPU")


@case(inputs={"x": np.linspace(-1.0, 1.0, 10), "unused": [1.0, 2.0]})
def ignores_an_input(x, unused, xp):
    return xp.sum(x**2)


def test_forward_names_an_unconnected_input_as_reverse_mode_does():
    with pytest.raises(NoGradient) as info:
        forward(ignores_an_input)
    assert info.value.inputs == ["unused"]
    assert "TensorFlow returned None for unused" in str(info.value)
    assert info.value.partial["unused"] is None
    # d/dx Σ x² = 2x for the connected input
    np.testing.assert_allclose(info.value.partial["x"], 2 * np.linspace(-1.0, 1.0, 10), rtol=1e-15)


@case(inputs={"x": np.array(3), "y": [0.5, 1.5]})
def integer_and_float(x, y, xp):
    return xp.sum(y * y) * x


def test_forward_integer_input_is_none_with_the_integer_diagnosis():
    with pytest.raises(NoGradient) as info:
        forward(integer_and_float)
    assert info.value.inputs == ["x"]
    assert "integer tensors are not differentiable" in str(info.value)
    # ∂/∂y (x Σ y²) = 2xy = [3, 9] at x = 3
    np.testing.assert_allclose(info.value.partial["y"], [3.0, 9.0], rtol=1e-15)


@case(inputs={"x": np.linspace(-2.0, 2.0, 12)})
def softplus_sum(x, xp):
    return xp.sum(xp.logaddexp(0.0, x))


@softplus_sum.tensorflow
def _softplus_with_a_wrong_backward_pass(x):
    import tensorflow as tf

    @tf.custom_gradient
    def softplus(v):
        def backward(upstream):
            return upstream * tf.exp(v)  # wrong on purpose: softplus' = sigmoid

        return tf.math.softplus(v), backward

    return tf.reduce_sum(softplus(x))


def test_forward_differentiates_the_computation_under_a_custom_gradient():
    x = np.linspace(-2.0, 2.0, 12)
    _, got = forward(softplus_sum)
    # forward mode runs through tf.math.softplus itself: sigmoid(x); reverse mode uses the wrong exp(x)
    np.testing.assert_allclose(got["x"], 1 / (1 + np.exp(-x)), rtol=1e-14)
    reverse = get_engine("tape").prepare(softplus_sum, "function", "float64").gradient()
    np.testing.assert_allclose(reverse["x"], np.exp(x), rtol=1e-14)


@case(inputs={"X": [[0.1, 0.2], [0.3, 0.4]]})
def matrix_exponential(X, xp):
    return xp.sum(X)  # not the truth for the native code; only the tape's forward variant is checked here


@matrix_exponential.tensorflow
def _matrix_exponential_tf(X):
    import tensorflow as tf

    return tf.reduce_sum(tf.linalg.expm(X))


def test_forward_of_a_matrix_exponential_against_scipy():
    # TensorFlow 2.21 cannot vectorise tf.linalg.expm (a cond on a variant tensor): the loop must be right too
    X = np.array([[0.1, 0.2], [0.3, 0.4]])
    # ∂/∂X_ij Σ expm(X) = Σ of the Fréchet derivative of expm at X in the direction E_ij
    want = np.array([[scipy.linalg.expm_frechet(X, np.eye(2)[[i]].T @ np.eye(2)[[j]], compute_expm=False).sum()
                      for j in range(2)] for i in range(2)])
    _, got = forward(matrix_exponential)
    np.testing.assert_allclose(got["X"], want, rtol=1e-12)


def test_forward_falls_back_to_a_loop_when_tensorflow_cannot_vectorise(monkeypatch):
    import tensorflow as tf

    def refuse(*args, **kwargs):
        raise ValueError("No pfor vectorization defined for SomeOp")

    monkeypatch.setattr(tf, "vectorized_map", refuse)
    prepared, got = forward(matrix_and_vector)
    A = np.array([[0.3, -0.2, 0.5], [0.1, 0.4, -0.7]])
    b = np.array([1.0, -1.0, 0.5])
    s = 1 - np.tanh(A @ b) ** 2  # as in test_forward_two_inputs_of_different_shapes_by_hand
    np.testing.assert_allclose(got["A"], np.outer(s, b), rtol=1e-13)
    np.testing.assert_allclose(got["b"], A.T @ s + 3 * b**2, rtol=1e-13)
    assert prepared.info["evaluation"] == "loop"
    assert "9 tangents one at a time" in prepared.info["note"] and "SomeOp" in prepared.info["note"]


def test_hessian_rosenbrock_100_against_scipy():
    rosen = rosenbrock_of(100)
    got = get_engine("tape").hessian(rosen, "eager", "float64")
    want = rosen_hess(rosen.inputs["x"])
    assert got.shape == (100, 100)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12 * np.max(np.abs(want)))


def test_hessian_rosenbrock_100_float32_against_scipy():
    rosen = rosenbrock_of(100)
    got = get_engine("tape").hessian(rosen, "eager", "float32")
    want = rosen_hess(rosen.inputs["x"].astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.max(np.abs(want)))


@case(inputs={"x": [0.5, 1.2], "y": -0.8})
def two_inputs(x, y, xp):
    return x[0] ** 2 * y + xp.sin(x[1]) * y**2


def test_hessian_of_two_named_inputs_by_hand():
    x0, x1, y = 0.5, 1.2, -0.8
    # f = x0² y + sin(x1) y², parameters (x0, x1, y):
    # ∂f/∂x0 = 2 x0 y, ∂f/∂x1 = cos(x1) y², ∂f/∂y = x0² + 2 sin(x1) y
    want = np.array([[2 * y, 0.0, 2 * x0],
                     [0.0, -np.sin(x1) * y**2, 2 * np.cos(x1) * y],
                     [2 * x0, 2 * np.cos(x1) * y, 2 * np.sin(x1)]])
    got = get_engine("tape").hessian(two_inputs, "eager", "float64")
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_hessian_over_its_budget_is_skipped_with_the_reason():
    too_many = rosenbrock_of(tape_module.MAX_HESSIAN_INPUTS + 1)
    with pytest.raises(Skip, match=rf"exceed the tape Hessian budget of {tape_module.MAX_HESSIAN_INPUTS}"):
        get_engine("tape").hessian(too_many, "eager", "float64")


@case(inputs={"x": [1.0, 2.0], "y": [0.5, -0.5, 3.0]})
def linear_in_y(x, y, xp):
    return xp.sum(x**3) + xp.sum(y)


def test_hessian_keeps_the_none_of_a_first_derivative_that_does_not_depend_on_an_input():
    # ∂f/∂y = 1 is a constant: the tape's second derivative with respect to y is None (truly 0)
    with pytest.raises(NoGradient, match="second derivative with respect to y") as info:
        get_engine("tape").hessian(linear_in_y, "eager", "float64")
    assert info.value.inputs == ["y"]


def test_hessian_of_an_unconnected_input_is_none():
    with pytest.raises(NoGradient, match="TensorFlow returned None for unused") as info:
        get_engine("tape").hessian(ignores_an_input, "eager", "float64")
    assert info.value.inputs == ["unused"]


def test_forward_with_a_few_inputs_is_unrolled_and_right():
    rosen = rosenbrock_of(tape_module.UNROLL_MAX_TANGENTS)
    prepared, got = forward(rosen)
    assert prepared.info["evaluation"] == "unrolled"
    want = rosen_der(rosen.inputs["x"])
    np.testing.assert_allclose(got["x"], want, rtol=1e-13, atol=1e-12 * np.max(np.abs(want)))
    larger, _ = forward(rosenbrock_of(tape_module.UNROLL_MAX_TANGENTS + 1))
    assert larger.info["evaluation"] == "vectorized"
