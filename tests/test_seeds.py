"""The articles' examples: the true values, derived by hand."""

import numpy as np
import pytest

from diffbench import gradient, hessian
from diffbench.engines import NoGradient

METHODS = ["reference", "symbolic", "tape", "tape/function", "finite"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,grad", [("quadratic", {"x": 8.0}), ("chain", {"x": 5.0}), ("square", {"x": 6.0}),
                                       ("product", {"x": 3.0, "y": 2.0}), ("persistent_tape", {"x": 108.0}),
                                       ("nested_second_order", {"x": 4.0})])
def test_scalar_examples(library, name, grad, method):
    got = gradient(library[name], method)
    for key, value in grad.items():
        assert float(got[key]) == pytest.approx(value, rel=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_linear_regression_gradient_is_zero_not_19_and_4(library, method):
    # w = 2, b = 1 fits y = 2x + 1 exactly: every residual is 0, so ∂/∂w = ∂/∂b = 0.
    got = gradient(library["linear_regression_mse"], method)
    assert float(got["w"]) == pytest.approx(0.0, abs=1e-7)
    assert float(got["b"]) == pytest.approx(0.0, abs=1e-7)
    assert float(got["w"]) != pytest.approx(19.0) and float(got["b"]) != pytest.approx(4.0)


@pytest.mark.parametrize("method", METHODS)
def test_dense_output_sum_squares(library, method):
    one = library["dense_output_sum_squares"]
    W, b = one.inputs["W"], one.inputs["b"]
    x = np.array([[1.0, 2.0, 3.0]])
    out = x @ W + b  # loss = Σ out²: ∂/∂W = xᵀ·2out, ∂/∂b = 2out
    got = gradient(one, method)
    np.testing.assert_allclose(got["W"], x.T @ (2 * out), rtol=1e-7)
    np.testing.assert_allclose(got["b"], (2 * out).ravel(), rtol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_dense_mse_target3(library, method):
    one = library["dense_mse_target3"]
    W, b = one.inputs["W"], one.inputs["b"]
    x = np.array([[1.0, 2.0]])
    r = x @ W + b - 3.0  # one sample: mean = the single value, ∂/∂W = xᵀ·2r
    got = gradient(one, method)
    np.testing.assert_allclose(got["W"], x.T @ (2 * r), rtol=1e-7)
    np.testing.assert_allclose(got["b"], (2 * r).ravel(), rtol=1e-7)


def test_nested_second_derivative_truth_is_zero_and_tensorflow_returns_none(library):
    one = library["nested_second_order"]
    assert hessian(one, "reference")[0, 0] == 0.0
    assert hessian(one, "symbolic")[0, 0] == 0.0
    with pytest.raises(NoGradient, match="second derivative"):
        hessian(one, "tape")


@pytest.mark.parametrize("method", METHODS)
def test_softplus_mse_hand_gradient(library, method):
    x = library["softplus_mse"].inputs["x"]
    softplus, sigmoid = np.log1p(np.exp(x)), 1 / (1 + np.exp(-x))
    # mean((1 − softplus)²): derivative −2(1 − softplus)·sigmoid / n
    want = -2 * (1 - softplus) * sigmoid / x.size
    np.testing.assert_allclose(gradient(library["softplus_mse"], method)["x"], want, rtol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_softplus_loss_matches_2_softplus_minus_y_times_sigmoid(library, method):
    x = library["softplus_loss"].inputs["x"]
    softplus, sigmoid = np.log1p(np.exp(x)), 1 / (1 + np.exp(-x))
    want = 2 * (softplus - 0.5) * sigmoid / x.size
    np.testing.assert_allclose(gradient(library["softplus_loss"], method)["x"], want, rtol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_keras_dense_layer(library, method):
    one = library["keras_dense1"]
    kernel, bias = one.inputs["kernel"], one.inputs["bias"]
    x, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[3.0], [7.0]])
    r = x @ kernel + bias - y  # mean over 2 samples: ∂/∂kernel = xᵀ·2r/2, ∂/∂bias = Σ 2r/2
    got = gradient(one, method)
    np.testing.assert_allclose(got["kernel"], x.T @ r, rtol=1e-6)
    np.testing.assert_allclose(got["bias"], r.sum(axis=0), rtol=1e-6)


def test_clipping_by_norm_keeps_the_direction(library):
    import tensorflow as tf

    one = library["clip_by_norm_loss"]
    w = one.inputs["w"]
    x, y = np.array([2.0, -1.0]), np.array([1.0, 1.0])
    truth = 2 * (w * x - y) * x  # = (20, 10): norm ≈ 22.4
    tape = gradient(one, "tape")["w"]
    clipped = tf.clip_by_norm(tf.constant(tape), 1.0).numpy()
    assert np.linalg.norm(clipped) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped, truth / np.linalg.norm(truth), rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_gradient_penalty(library, method):
    w = library["gradient_penalty"].inputs["w"]
    a, y, lam = np.array([1.0, 2.0]), np.array([2.0, -1.0]), 0.1
    r = a * w - y
    # d/dw_j [Σ r² + λ Σ|2 a r|] = 2 a_j r_j + λ · sign(2 a_j r_j) · 2 a_j²
    want = 2 * a * r + lam * np.sign(2 * a * r) * 2 * a**2
    np.testing.assert_allclose(gradient(library["gradient_penalty"], method)["w"], want, rtol=1e-7)
