"""Vector-valued functions (tag ``jacobian``): their derivative is a Jacobian, J[k, i] = ∂out[k]/∂in[i].

Each docstring derives the Jacobian by hand; tests/test_jacobian_cases.py writes the same formula in NumPy and
checks it against central differences. Sizes stay small (m·N ≤ 81, m ≤ 9 rows) because the certified reference
costs one certified gradient per output row; the one large case, ``elementwise_large``, is measured by
Jacobian-vector and vector-Jacobian products only.
"""

import numpy as np

from diffbench import case, uniform

# ---------------------------------------------------------------------------------------------------------------
# machine learning: softmax, a dense layer, per-example gradients


@case(inputs={"z": [0.5, -1.2, 2.0, 0.3]}, tags=["jacobian", "ml"])
def softmax(z, xp):
    """p = softmax(z) = exp(z) / Σ exp(z), written stably (z − max z).

    ∂pₖ/∂zᵢ = pₖ(δₖᵢ − pᵢ), so J = diag(p) − ppᵀ: symmetric, each row sums to 0 (Σₖ pₖ = 1 whatever z), and
    J·1 = 0 (adding a constant to every logit changes nothing).
    """
    shifted = z - xp.max(z)
    e = xp.exp(shifted)
    return e / xp.sum(e)


def _dense_inputs(n):
    return {"W": uniform((4, n), seed=71) / 2, "b": uniform(4, seed=72) / 2, "x": uniform(n, -2.0, 2.0, seed=73)}


@case(inputs=_dense_inputs(3), tags=["jacobian", "ml", "network"], sizes=_dense_inputs)
def dense_tanh(W, b, x, xp):
    """A tanh dense layer of 4 units, y = tanh(Wx + b), differentiated with respect to W, b and x.

    With dₖ = 1 − yₖ² (tanh' = 1 − tanh²): ∂yₖ/∂W[j, l] = δₖⱼ dₖ x[l], ∂yₖ/∂b[j] = δₖⱼ dₖ, ∂yₖ/∂x[l] = dₖ W[k, l].
    So the W block is block-diagonal in the unit, the b block is diag(d), the x block is diag(d)·W.
    ``sizes=`` gives n inputs x (and a 4 × n W): m = 4 outputs, N = 5n + 4 inputs, so reverse mode needs 4
    products and forward mode 5n + 4.
    """
    return xp.tanh(W @ x + b)


@case(inputs={"W": np.tile([0.3, -0.8, 0.5], (5, 1))}, tags=["jacobian", "ml", "classification", "batch"])
def logistic_per_example(W, xp):
    """Per-example logistic losses ℓ_b = log(1 + exp(−y_b W_b·x_b)) on 5 examples, of shape (5, 1).

    Row b of W is example b's copy of the weights w = (0.3, −0.8, 0.5) (all rows equal): the Jacobian's
    diagonal blocks are then the per-example gradients, ∂ℓ_b/∂W_b = −y_b σ(−y_b W_b·x_b) x_b (σ the logistic
    sigmoid), and every block ∂ℓ_b/∂W_c with c ≠ b is 0. Axis 0 of W and of the output is the batch
    (tag ``batch``), so ``batch_jacobian`` applies; the output has a trailing axis of 1 because
    ``batch_jacobian`` needs a target of rank 2.
    """
    X = xp.asarray([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-0.2, 0.8, 1.1], [0.9, -1.3, 0.4], [-1.1, 0.6, -0.5]])
    y = xp.asarray([1.0, -1.0, 1.0, 1.0, -1.0])
    margins = y * xp.sum(W * X, axis=1)
    return xp.reshape(xp.logaddexp(0.0, -margins), (5, 1))


# ---------------------------------------------------------------------------------------------------------------
# least squares and ODE right-hand sides


def _rosenbrock_inputs(n):
    return {"x": uniform(n, -2.0, 2.0, seed=n)}


@case(inputs={"x": [-1.2, 1.0, 0.5, 2.0]}, tags=["jacobian", "classic", "least-squares"], sizes=_rosenbrock_inputs)
def rosenbrock_residuals(x, xp):
    """Rosenbrock as least-squares residuals: r = (10(x[i+1] − x[i]²), 1 − x[i]) for i < n − 1, so Σ r² is
    SciPy's rosen.

    Row 2i (the first residual of pair i): ∂/∂x[i] = −20 x[i], ∂/∂x[i+1] = 10. Row 2i + 1: ∂/∂x[i] = −1.
    Every other entry is 0. Gauss–Newton's gradient 2Jᵀr is then SciPy's rosen_der.
    """
    first = 10 * (x[1:] - x[:-1] ** 2)
    second = 1 - x[:-1]
    return xp.reshape(xp.stack([first, second], axis=1), (-1,))


@case(inputs={"y": [0.95, 2.0e-5, 0.04998]}, tags=["jacobian", "ode", "stiff"],
      expect={"finite-forward": "inaccurate"})
def robertson(y, xp):
    """The right-hand side of Robertson's chemical kinetics, the classic stiff ODE (rates 0.04, 1e4, 3e7):
    f = (−0.04 y₁ + 1e4 y₂y₃, 0.04 y₁ − 1e4 y₂y₃ − 3e7 y₂², 3e7 y₂²).

    J = [[−0.04, 1e4 y₃, 1e4 y₂], [0.04, −1e4 y₃ − 6e7 y₂, −1e4 y₂], [0, 6e7 y₂, 0]]: entries from 0.04 to
    2.5e3 at this point (the stiffness: eigenvalues of very different sizes); the columns sum to 0 (f conserves
    y₁ + y₂ + y₃), and row 3 does not depend on y₁ or y₃ (exact zeros).
    f is at most quadratic, so central differences are exact but for rounding. Forward differences are not: in
    row 2 the error is h·|∂²f₂/∂y₂²|/2 = h·3e7 against the entry −1e4 y₃ − 6e7 y₂ ≈ −1.7e3, i.e. 2.6e-4 relative
    with float64's h ≈ 1.5e-8 (beyond its tolerance), and with float32's h ≈ 3.5e-4, already 17 times y₂ itself,
    the difference is off by a factor of about 7.
    """
    k1, k2, k3 = 0.04, 1.0e4, 3.0e7
    r1 = k1 * y[0]
    r2 = k2 * y[1] * y[2]
    r3 = k3 * y[1] ** 2
    return xp.stack([-r1 + r2, r1 - r2 - r3, r3])


@case(inputs={"u": [1.0, 2.0, 20.0]}, tags=["jacobian", "ode"])
def lorenz(u, xp):
    """The Lorenz system's right-hand side (σ = 10, ρ = 28, β = 8/3): f = (σ(y − x), x(ρ − z) − y, xy − βz).

    J = [[−σ, σ, 0], [ρ − z, −1, −x], [y, x, −β]].
    """
    sigma, rho, beta = 10.0, 28.0, 8.0 / 3.0
    x, y, z = u[0], u[1], u[2]
    return xp.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])


# ---------------------------------------------------------------------------------------------------------------
# geometry and structure


@case(inputs={"theta": 0.7, "v": [1.5, -0.5]}, tags=["jacobian", "geometry"])
def rotation(theta, v, xp):
    """A 2-D rotation of v by θ: R(θ)v with R = [[cos θ, −sin θ], [sin θ, cos θ]].

    ∂(Rv)/∂v = R(θ) (orthogonal, determinant 1); ∂(Rv)/∂θ = R'(θ)v = (−sin θ v₀ − cos θ v₁, cos θ v₀ − sin θ v₁),
    which is Rv turned by a further 90°: it has the length of v and is orthogonal to Rv.
    """
    c, s = xp.cos(theta), xp.sin(theta)
    return xp.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@case(inputs={"x": [0.3, -0.8], "y": [1.0, 2.0, 3.0]}, tags=["jacobian", "unconnected"], expect={"tape": "none"})
def unused_input_block(x, y, xp):
    """outₖ = exp(xₖ)·‖x‖², with an input y that no output depends on.

    ∂outₖ/∂xᵢ = δₖᵢ exp(xₖ)‖x‖² + 2 exp(xₖ) xᵢ, and ∂out/∂y is a 2 × 3 zero block. TensorFlow returns None for y
    (status ``none``); the truth is the zero block.
    """
    return xp.exp(x) * xp.sum(x**2)


@case(inputs={"x": [-1.0, 0.0, 2.0]}, tags=["jacobian", "nondiff", "kink"], expect={"*": "undefined"})
def relu_vector_kink(x, xp):
    """relu(x) = max(x, 0) elementwise, at x = (−1, 0, 2).

    J = diag(relu'(x)) = diag(0, ·, 1): the entry (1, 1) does not exist (the one-sided slopes are 0 and 1), so
    output row 1 is ``undefined``; rows 0 and 2 are the exact rows (0, 0, 0) and (0, 0, 1).
    """
    return xp.maximum(x, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# size: products only


def _elementwise_inputs(n):
    return {"x": uniform(n, -3.0, 3.0, seed=81)}


@case(inputs=_elementwise_inputs(100_000), tags=["jacobian", "elementwise", "large"], sizes=_elementwise_inputs)
def elementwise_large(x, xp):
    """out = x·tanh(x) elementwise at n = 10⁵ inputs (0.8 MB).

    J = diag(tanh(x) + x(1 − tanh²(x))): diagonal, but 10¹⁰ entries as a dense matrix, far beyond the full-Jacobian
    limit, so only Jacobian-vector and vector-Jacobian products are measured (J·v is that diagonal times v).
    ``sizes=`` gives the same map at n inputs for the scaling study (``diffbench scale --jacobian``).
    """
    return x * xp.tanh(x)


# ---------------------------------------------------------------------------------------------------------------
# TensorFlow's two Jacobian paths


@case(inputs={"X": [[0.4, -1.1, 0.7], [1.3, -0.2, 0.9], [-0.6, 0.5, -1.4]]}, tags=["jacobian", "native", "pfor"])
def diag_tensor_tanh(X, xp):
    """tanh(X ⊙ C) for a fixed 3 × 3 matrix C; the tape differentiates it written through a rank-4 diagonal tensor.

    The native code forms D = tensor_diag(X) (D[i, j, k, l] = X[i, j] δᵢₖ δⱼₗ) and contracts it with C, which is
    X ⊙ C. Truth: ∂out[i, j]/∂X[k, l] = δᵢₖ δⱼₗ C[i, j](1 − out[i, j]²), diagonal in (i, j).
    What it checks: the backward pass of tensor_diag of a matrix is DiagPart of a rank-4 cotangent, for which
    tape.jacobian's vectorisation (pfor) has no batched kernel and falls back to a while loop inside the
    vectorised graph, while ``experimental_use_pfor=False`` loops over the whole backward pass. Both paths must
    give this Jacobian in float32 as in float64. With TensorFlow 2.21 on the CPU they agree bit for bit (so do
    they for sort, segment_sum, QR, SVD and determinants, which pfor vectorises); the case guards the fallback
    path, which no other case takes.
    """
    C = xp.asarray([[1.5, -0.5, 2.0], [-1.0, 0.8, 0.3], [0.7, -2.0, 1.2]])
    return xp.tanh(X * C)


@diag_tensor_tanh.tensorflow
def _diag_tensor_tanh_tf(X):
    import tensorflow as tf

    C = tf.constant([[1.5, -0.5, 2.0], [-1.0, 0.8, 0.3], [0.7, -2.0, 1.2]], dtype=X.dtype)
    return tf.tanh(tf.tensordot(tf.linalg.tensor_diag(X), C, axes=2))
