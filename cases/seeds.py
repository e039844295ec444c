"""The examples of the TensorFlow gradient articles this project grew from (tag ``seed``).

Where an article used random values, fixed seeded values stand in for them.
"""

import functools

from diffbench import case, uniform


@case(inputs={"x": 3.0}, tags=["seed", "scalar"])
def quadratic(x, xp):
    """f(x) = x² + 2x + 1; df/dx = 2x + 2 = 8 at x = 3."""
    return x**2 + 2 * x + 1


@case(inputs={"x": 2.0}, tags=["seed", "scalar"])
def chain(x, xp):
    """y = x², z = y + x; dz/dx = 2x + 1 = 5 at x = 2."""
    y = x**2
    return y + x


@case(inputs={"x": 3.0}, tags=["seed", "scalar"])
def square(x, xp):
    """y = x²; dy/dx = 6 at x = 3."""
    return x**2


@case(inputs={"w": 2.0, "b": 1.0}, tags=["seed", "regression"])
def linear_regression_mse(w, b, xp):
    """Mean squared error of w·x + b on x = [1, 2, 3, 4], y = [3, 5, 7, 9].

    w = 2, b = 1 fits the data exactly, so both partial derivatives are 0 (the article
    printed 19 and 4, which are not the gradient at this point).
    """
    x = xp.asarray([1.0, 2.0, 3.0, 4.0])
    y = xp.asarray([3.0, 5.0, 7.0, 9.0])
    return xp.mean((w * x + b - y) ** 2)


@case(inputs={"W": uniform((3, 2), seed=5), "b": uniform(2, seed=6)}, tags=["seed", "matrix"])
def dense_output_sum_squares(W, b, xp):
    """output = x·W + b with x = [[1, 2, 3]]; loss = sum(output²)."""
    x = xp.asarray([[1.0, 2.0, 3.0]])
    return xp.sum((x @ W + b) ** 2)


@case(inputs={"W": uniform((2, 1), seed=7), "b": uniform(1, seed=8)}, tags=["seed", "matrix"])
def dense_mse_target3(W, b, xp):
    """loss = mean((x·W + b − 3)²) with x = [[1, 2]]."""
    x = xp.asarray([[1.0, 2.0]])
    return xp.mean((x @ W + b - 3.0) ** 2)


@case(inputs={"x": 2.0, "y": 3.0}, tags=["seed", "scalar"])
def product(x, y, xp):
    """z = x·y; (∂z/∂x, ∂z/∂y) = (y, x) = (3, 2)."""
    return x * y


@case(inputs={"x": 3.0}, tags=["seed", "scalar", "persistent"])
def persistent_tape(x, xp):
    """y = x², z = y² from one (persistent) tape: dz/dx = 4x³ = 108 at x = 3, dy/dx = 6."""
    y = x * x
    return y * y


@case(inputs={"x": 1.0}, tags=["seed", "scalar", "second-order"],
      expect={"tape-order2": "none"})
def nested_second_order(x, xp):
    """x·y² with y = 2 computed by a nested function: first derivative 4, second 0.

    TensorFlow's outer tape returns None for the second derivative (the first
    derivative, 4, does not depend on x on the tape), while the truth is 0.
    """
    def inner(v):
        y = 2.0
        return v * y**2

    return inner(x)


@case(inputs={"x": uniform(10, -3.0, 3.0, seed=1)}, tags=["seed", "softplus"])
def softplus_mse(x, xp):
    """mean((y_true − log(1 + exp(x)))²) over 10 values, y_true = 1."""
    return xp.mean((1.0 - xp.log(1 + xp.exp(x))) ** 2)


@case(inputs={"x": uniform(10, -3.0, 3.0, seed=2)}, tags=["seed", "softplus", "native"])
def softplus_loss(x, xp):
    """mean((softplus(x) − y)²), y = 0.5; hand-derived gradient 2(softplus(x) − y)·sigmoid(x)/n.

    The tape differentiates tf.math.softplus (native TensorFlow code).
    """
    return xp.mean((xp.logaddexp(0.0, x) - 0.5) ** 2)


@softplus_loss.tensorflow
def _softplus_loss_tf(x):
    import tensorflow as tf

    return tf.reduce_mean((tf.math.softplus(x) - 0.5) ** 2)


@functools.lru_cache(maxsize=None)
def _dense_layer(dtype):
    import keras

    layer = keras.layers.Dense(1, dtype=dtype)
    layer.build((None, 2))
    return layer


@case(inputs={"kernel": uniform((2, 1), seed=3), "bias": uniform(1, seed=4)}, tags=["seed", "keras", "native"])
def keras_dense1(kernel, bias, xp):
    """Keras Dense(1) on x = [[1, 2], [3, 4]], y = [[3], [7]] with mean squared error.

    The tape differentiates the real Keras layer (``stateless_call`` with the case's
    kernel and bias); the xp function is the same model written out.
    """
    x = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    y = xp.asarray([[3.0], [7.0]])
    return xp.mean((x @ kernel + bias - y) ** 2)


@keras_dense1.tensorflow
def _keras_dense1_tf(kernel, bias):
    import tensorflow as tf

    layer = _dense_layer(kernel.dtype.name)
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]], dtype=kernel.dtype)
    y = tf.constant([[3.0], [7.0]], dtype=kernel.dtype)
    out, _ = layer.stateless_call([kernel, bias], [], x)
    return tf.reduce_mean((out - y) ** 2)


@case(inputs={"w": [3.0, 4.0]}, tags=["seed", "clipping"])
def clip_by_norm_loss(w, xp):
    """sum((w·x − y)²) with a gradient of norm ≫ 1, the input to clipping by norm.

    Clipping rescales the gradient to norm c but must keep its direction; the tests
    check the clipped tape gradient's direction against the reference's.
    """
    x = xp.asarray([2.0, -1.0])
    y = xp.asarray([1.0, 1.0])
    return xp.sum((w * x - y) ** 2)


@case(inputs={"w": [0.5, -1.5]}, tags=["seed", "second-order", "native"])
def gradient_penalty(w, xp):
    """loss + λ·Σ|∂loss/∂w| with loss = sum((a·w − y)²), λ = 0.1.

    The xp truth writes ∂loss/∂w = 2·a·(a·w − y) out by hand; the tape computes it with
    a nested tape (second-order machinery) inside the function it differentiates.
    """
    a = xp.asarray([1.0, 2.0])
    y = xp.asarray([2.0, -1.0])
    residual = a * w - y
    inner_gradient = 2 * a * residual
    return xp.sum(residual**2) + 0.1 * xp.sum(xp.abs(inner_gradient))


@gradient_penalty.tensorflow
def _gradient_penalty_tf(w):
    import tensorflow as tf

    a = tf.constant([1.0, 2.0], dtype=w.dtype)
    y = tf.constant([2.0, -1.0], dtype=w.dtype)
    with tf.GradientTape() as inner:
        inner.watch(w)
        loss = tf.reduce_sum((a * w - y) ** 2)
    return loss + 0.1 * tf.reduce_sum(tf.abs(inner.gradient(loss, w)))

