"""Machine-learning losses and layers (tag ``ml``), stable and naive forms side by side."""

from diffbench import case, uniform

_X = [[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-0.2, 0.8, 1.1], [0.9, -1.3, 0.4], [-1.1, 0.6, -0.5]]


def _mlp_inputs(width):
    return {"W1": uniform((3, width), seed=31) / 2, "b1": uniform(width, seed=32) / 2,
            "W2": uniform((width, 1), seed=33) / 2, "b2": uniform(1, seed=34) / 2}


@case(inputs={"w": uniform(3, seed=11)}, tags=["ml", "classification"])
def logistic_regression(w, xp):
    """mean(log(1 + exp(−y·Xw))) written stably as logaddexp(0, −y·Xw)."""
    X = xp.asarray(_X)
    y = xp.asarray([1.0, -1.0, 1.0, 1.0, -1.0])
    return xp.mean(xp.logaddexp(0.0, -y * (X @ w)))


@case(inputs={"logits": uniform((2, 3), -2.0, 2.0, seed=12)}, tags=["ml", "classification", "native"])
def softmax_cross_entropy(logits, xp):
    """−Σ labels·log softmax(logits); the tape runs tf.nn.softmax_cross_entropy_with_logits."""
    labels = xp.asarray([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    log_softmax = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    return -xp.sum(labels * log_softmax)


@softmax_cross_entropy.tensorflow
def _softmax_cross_entropy_tf(logits):
    import tensorflow as tf

    labels = tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=logits.dtype)
    return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))


@case(inputs={"w": [0.8, -0.4, 1.3]}, tags=["ml", "regression"], expect={"finite-central-float32-order2": "inaccurate"})
def huber(w, xp):
    """Huber loss (δ = 1) of Xw − y, at a point where no residual sits on |r| = δ.

    The residuals are (2.4, 0.17, −1.05, 2.76, −2.27): only the second is inside, so the Hessian is
    x₂x₂ᵀ with x₂ = (1.5, 0.3, −0.7). Second differences in float32 give 0.0853 for its (1, 1) entry
    0.09 (5% off, an entry holding 3% of the norm) and 0.438 for 0.45: beyond float32's hard limit of
    1e-2 for an entry of weight, although the normwise 7.7e-3 is within the 3.5e-2 tolerance.
    """
    X = xp.asarray(_X)
    y = xp.asarray([1.0, 0.0, 2.0, -1.0, 0.5])
    r = X @ w - y
    return xp.sum(xp.where(xp.abs(r) <= 1.0, 0.5 * r**2, xp.abs(r) - 0.5))


@case(inputs={"w": [0.4, -0.2, 0.9]}, tags=["ml", "classification"],
      expect={"tape-order2": "none", "finite-central-float32-order2": "inaccurate"})
def hinge(w, xp):
    """mean(max(0, 1 − y·Xw)), at a point off every hinge.

    Piecewise linear: the true Hessian is 0, and TensorFlow returns None for it. In
    float32 the wide second-difference steps cross a hinge.
    """
    X = xp.asarray(_X)
    y = xp.asarray([1.0, -1.0, 1.0, 1.0, -1.0])
    return xp.mean(xp.maximum(0.0, 1 - y * (X @ w)))


@case(inputs=_mlp_inputs(4), tags=["ml", "network"], sizes=_mlp_inputs)
def mlp_tanh(W1, b1, W2, b2, xp):
    """Two-layer tanh network, mean squared error on 5 samples; sizes= is the hidden width."""
    X = xp.asarray(_X)
    y = xp.asarray([[1.0], [0.0], [0.5], [-0.5], [0.2]])
    hidden = xp.tanh(X @ W1 + b1)
    return xp.mean((hidden @ W2 + b2 - y) ** 2)


def _lse_inputs(n):
    return {"x": uniform(n, -3.0, 3.0, seed=n + 1)}


@case(inputs={"x": [90.0, 91.0, 89.5]}, tags=["ml", "stable"], sizes=_lse_inputs,
      expect={"finite-central": "inaccurate", "finite-central-order2": "ok", "finite-forward-float32": "inaccurate"})
def logsumexp_stable(x, xp):
    """max(x) + log Σ exp(x − max(x)): finite for large x in float32.

    Central differences scale their step with |x| ≈ 90, far coarser than
    the function's curvature scale of 1: truncation error (the diagnosis says so).
    So do float32 forward differences (h ≈ 0.031): ∇f = softmax(x) ≈ (0.2312, 0.6285, 0.1402), and the
    truncation h·pᵢ(1 − pᵢ)/2 puts the first and last components 1.2% off, beyond float32's hard
    limit of 1e-2 for a component of weight (the normwise 7e-3 is within the 3.5e-2 tolerance).
    """
    m = xp.max(x)
    return m + xp.log(xp.sum(xp.exp(x - m)))


@case(inputs={"x": [90.0, 91.0, 89.5]}, tags=["ml", "naive"],
      expect={"float32": "nan", "finite-complex_step-float32": "inaccurate", "finite-central-float64": "inaccurate",
              "finite-central-float64-order2": "ok"})
def logsumexp_naive(x, xp):
    """log Σ exp(x): exp overflows in float32 beyond x ≈ 88.7."""
    return xp.log(xp.sum(xp.exp(x)))


def _softplus_inputs(n):
    return {"x": uniform(n, -4.0, 4.0, seed=n + 2)}


@case(inputs={"x": [100.0, -3.0, 0.5]}, tags=["ml", "stable"], sizes=_softplus_inputs,
      expect={"symbolic-float32": "nan"})
def softplus_stable(x, xp):
    """Σ logaddexp(0, x) = Σ log(1 + exp(x)) computed without overflow.

    The tape differentiates the stable primitive; SymPy differentiates the mathematics,
    exp(x)/(1 + exp(x)), which overflows in float32: a stable function does not give a
    stable symbolic gradient.
    """
    return xp.sum(xp.logaddexp(0.0, x))


@case(inputs={"x": [100.0, -3.0, 0.5]}, tags=["ml", "naive"],
      expect={"float32": "nan", "finite-complex_step-float32": "inaccurate"})
def softplus_naive(x, xp):
    """Σ log(1 + exp(x)): exp(100) overflows float32, so the loss and its gradient break."""
    return xp.sum(xp.log(1 + xp.exp(x)))


@case(inputs={"x": uniform(8, -4.0, 4.0, seed=41)}, tags=["ml", "scaling"], sizes=_softplus_inputs)
def softplus_sum(x, xp):
    """Σ logaddexp(0, x) at a moderate point; sizes= gives n inputs for scaling studies."""
    return xp.sum(xp.logaddexp(0.0, x))


@case(inputs={"Q": uniform((2, 2), seed=51), "K": uniform((2, 2), seed=52), "V": uniform((2, 2), seed=53)},
      tags=["ml", "attention"])
def attention(Q, K, V, xp):
    """Σ c ⊙ softmax(QKᵀ/√d)·V, a small attention block with a fixed read-out c."""
    scores = Q @ K.T / xp.sqrt(2.0)
    weights = xp.exp(scores) / xp.sum(xp.exp(scores), axis=1, keepdims=True)
    readout = xp.asarray([[1.0, -0.5], [0.25, 2.0]])
    return xp.sum(readout * (weights @ V))


@case(inputs={"x": uniform(4, -2.0, 2.0, seed=61)}, tags=["ml", "custom-gradient", "native"])
def custom_gradient_right(x, xp):
    """Σ softplus(x), with a tf.custom_gradient whose backward pass is sigmoid(x) (right)."""
    return xp.sum(xp.logaddexp(0.0, x))


@custom_gradient_right.tensorflow
def _custom_gradient_right_tf(x):
    import tensorflow as tf

    @tf.custom_gradient
    def softplus(v):
        def backward(upstream):
            return upstream * tf.sigmoid(v)

        return tf.math.softplus(v), backward

    return tf.reduce_sum(softplus(x))


@case(inputs={"x": uniform(4, -2.0, 2.0, seed=61)}, tags=["ml", "custom-gradient", "native"],
      expect={"tape": "inaccurate", "tape-forward": "ok"})
def custom_gradient_wrong(x, xp):
    """Σ softplus(x), with a tf.custom_gradient whose backward pass is exp(x): deliberately wrong.

    Reverse mode uses the wrong backward pass (inaccurate); forward mode differentiates
    the forward computation itself and is right.
    """
    return xp.sum(xp.logaddexp(0.0, x))


@custom_gradient_wrong.tensorflow
def _custom_gradient_wrong_tf(x):
    import tensorflow as tf

    @tf.custom_gradient
    def softplus(v):
        def backward(upstream):
            return upstream * tf.exp(v)  # wrong on purpose: the derivative of softplus is sigmoid

        return tf.math.softplus(v), backward

    return tf.reduce_sum(softplus(x))
