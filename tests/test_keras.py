"""Cases made from Keras models (``diffbench.keras_case``) and the diagnosis of a None gradient's cause."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

import diffbench
from diffbench.engines import NoGradient

keras = pytest.importorskip("keras")

X = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
Y = np.array([[1.0], [0.0], [2.0]])
W = np.array([[0.25], [-0.5]])  # exact in float32, the model's dtype
B = np.array([0.125])


def linear_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="out")])
    model.set_weights([W, B])
    return model


def mse_gradient():
    """Hand-derived: L = mean((Xw + b - y)^2) over n = 3 rows, so dL/dw = 2/n X^T r and dL/db = 2/n sum(r)."""
    r = X @ W + B - Y
    return 2 / 3 * X.T @ r, 2 / 3 * r.sum(axis=0)


def test_keras_case_inputs_are_the_weights_named_after_their_paths():
    made = diffbench.keras_case(linear_model(), "mse", X, Y, name="linear")
    assert made.problem is None
    assert list(made.inputs) == ["out_kernel", "out_bias"]  # the layer is named "out"
    np.testing.assert_array_equal(made.inputs["out_kernel"], W)
    assert made.native is not None and "keras" in made.tags


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 1e-5)])
def test_tape_differentiates_the_real_model_and_the_maths_agree(dtype, rtol):
    made = diffbench.keras_case(linear_model(), "mse", X, Y, name="linear")
    kernel, bias = mse_gradient()
    tape = diffbench.gradient(made, method="tape/eager", dtype=dtype)
    np.testing.assert_allclose(tape["out_kernel"], kernel, rtol=rtol)
    np.testing.assert_allclose(tape["out_bias"], bias, rtol=rtol)
    reference = diffbench.gradient(made, method="reference")  # from the xp function written from the model
    np.testing.assert_allclose(reference["out_kernel"], kernel, rtol=1e-14)


def test_float64_rows_keep_a_batch_that_float32_cannot_hold():
    # X + 0.1 is not a float32 array: a float64 row must use it as given, not rounded by a float32 input
    # layer (which would move the gradient by ~1e-8 relative); the truth is the same hand-derived formula
    x = X + 0.1
    made = diffbench.keras_case(linear_model(), "mse", x, Y, name="linear_offset")
    r = x @ W + B - Y
    kernel, bias = 2 / 3 * x.T @ r, 2 / 3 * r.sum(axis=0)
    tape = diffbench.gradient(made, method="tape/eager", dtype="float64")
    np.testing.assert_allclose(tape["out_kernel"], kernel, rtol=1e-13)
    np.testing.assert_allclose(tape["out_bias"], bias, rtol=1e-13)


def test_a_model_it_cannot_write_has_no_certified_truth_and_maths_fixes_it():
    from diffbench.errors import ReferenceUnavailable
    from diffbench.keras_cases import NO_CERTIFIED_TRUTH, check_against_differences

    model = keras.Sequential([keras.Input((4, 1)), keras.layers.Conv1D(1, 2, name="conv"), keras.layers.Flatten()])
    made = diffbench.keras_case(model, "mse", np.ones((1, 4, 1)), np.zeros((1, 3)), name="conv")
    assert made.problem is None and NO_CERTIFIED_TRUTH in made.tags
    with pytest.raises(ReferenceUnavailable, match="no certified truth.*Conv1D.*maths="):
        diffbench.gradient(made, method="reference")
    check_against_differences(made)  # the real model's tape against Richardson differences: they agree

    def maths(kernel, bias, xp):
        # a width-2 convolution of a row of ones: every output is k0 + k1 + b, against a target of 0
        out = kernel[0, 0, 0] + kernel[1, 0, 0] + bias[0]
        return out**2

    made = diffbench.keras_case(model, "mse", np.ones((1, 4, 1)), np.zeros((1, 3)), name="conv", maths=maths)
    assert made.problem is None and NO_CERTIFIED_TRUTH not in made.tags
    s = float(made.inputs["conv_kernel"].sum() + made.inputs["conv_bias"][0])
    tape = diffbench.gradient(made, method="tape/eager")
    np.testing.assert_allclose(tape["conv_bias"], [2 * s], rtol=1e-12)  # d(s^2)/db = 2s


def test_without_a_certified_truth_a_wrong_custom_gradient_is_still_caught():
    import tensorflow as tf

    from diffbench.keras_cases import check_against_differences

    @tf.custom_gradient
    def wrong_square(z):
        return z * z, lambda upstream: upstream * 3.0 * z  # the derivative of z² is 2z, not 3z

    class WrongSquare(keras.layers.Layer):
        def call(self, z):
            return wrong_square(z)

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="hidden"), WrongSquare(),
                              keras.layers.Dense(1, name="out")])
    made = diffbench.keras_case(model, "mse", X, Y, name="wrong_square")
    with pytest.raises(AssertionError, match="wrong gradient"):
        check_against_differences(made)


def test_a_run_checks_the_tape_of_a_model_without_maths_against_differences():
    # no maths can be written for these models, so the tape rows are judged against Richardson differences of
    # the same TensorFlow code (with their error estimate): a right model is ok, a custom gradient of z² that
    # returns 3z instead of 2z is inaccurate, and both rows say that no certified truth exists
    import tensorflow as tf

    @tf.custom_gradient
    def wrong_square(z):
        return z * z, lambda upstream: upstream * 3.0 * z

    class WrongSquare(keras.layers.Layer):
        def call(self, z):
            return wrong_square(z)

    conv = keras.Sequential([keras.Input((4, 1)), keras.layers.Conv1D(1, 2, name="conv"), keras.layers.Flatten()])
    right = diffbench.keras_case(conv, "mse", np.arange(4.0).reshape(1, 4, 1), np.ones((1, 3)), name="conv_ok")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="hidden"), WrongSquare(),
                              keras.layers.Dense(1, name="out")])
    wrong = diffbench.keras_case(model, "mse", X, Y, name="wrong_square_run")
    df = diffbench.run([right, wrong], methods=["tape"], dtypes=["float64"], variants={"tape": ["eager"]},
                       order2=False, timing=False)
    rows = {r["case"]: r for _, r in df[df["method"] == "tape"].iterrows()}
    assert rows["conv_ok"]["status"] == "ok" and rows["conv_ok"]["reference"] == "richardson-differences"
    assert rows["wrong_square_run"]["status"] == "inaccurate"
    assert all("no certified truth" in rows[name]["diagnosis"] for name in rows)


# -- the maths written out: softmax classifiers, cross-entropies, activations --------------------------------
XC = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-0.3, 0.8, 0.1], [1.0, 1.0, -1.0]])
LABELS = np.array([0, 2, 1, 2])
ONE_HOT = np.eye(3)[LABELS]


def softmax_classifier(activation="softmax"):
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation=activation, name="out")])


def cross_entropy_gradient(model):
    """Hand-derived: P = softmax(XW + b) row by row, L = mean_i −Σ_j Y_ij log P_ij over n rows, so
    dL/dW = Xᵀ(P − Y)/n and dL/db = Σ_i (P_i − Y_i)/n (the textbook softmax-regression gradient)."""
    w, b = (v.numpy().astype(np.float64) for v in model.trainable_variables)
    z = XC @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    n = len(XC)
    return XC.T @ (p - ONE_HOT) / n, (p - ONE_HOT).sum(axis=0) / n


@pytest.mark.parametrize("loss, y", [("categorical_crossentropy", ONE_HOT), ("sparse_categorical_crossentropy", LABELS),
                                     (keras.losses.CategoricalCrossentropy(), ONE_HOT)])
def test_a_softmax_classifier_is_written_out(loss, y):
    model = softmax_classifier()
    made = diffbench.keras_case(model, loss, XC, y, name="classifier")
    assert made.problem is None and "no-certified-truth" not in made.tags
    kernel, bias = cross_entropy_gradient(model)
    reference = diffbench.gradient(made, method="reference")
    np.testing.assert_allclose(reference["out_kernel"], kernel, rtol=1e-12)
    np.testing.assert_allclose(reference["out_bias"], bias, rtol=1e-12, atol=1e-15)
    if isinstance(loss, str):  # a Keras loss object computes in float32 whatever the model's dtype
        tape = diffbench.gradient(made, method="tape/eager", dtype="float64")
        np.testing.assert_allclose(tape["out_kernel"], kernel, rtol=1e-12)


def test_categorical_cross_entropy_from_logits():
    model = softmax_classifier(activation="linear")
    made = diffbench.keras_case(model, keras.losses.CategoricalCrossentropy(from_logits=True), XC, ONE_HOT, name="lg")
    kernel, _ = cross_entropy_gradient(model)  # the same gradient: the softmax is inside the loss
    np.testing.assert_allclose(diffbench.gradient(made, method="reference")["out_kernel"], kernel, rtol=1e-12)


def test_binary_cross_entropy_of_a_sigmoid():
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="sigmoid", name="out")])
    y = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    made = diffbench.keras_case(model, "binary_crossentropy", XC, y, name="bce")
    # L = mean over n·k entries of −[y log σ(z) + (1−y) log(1−σ(z))]: dL/dz = (σ(z) − y)/(n·k)
    w, b = (v.numpy().astype(np.float64) for v in model.trainable_variables)
    r = (1 / (1 + np.exp(-(XC @ w + b))) - y) / y.size
    reference = diffbench.gradient(made, method="reference")
    np.testing.assert_allclose(reference["out_kernel"], XC.T @ r, rtol=1e-12)
    np.testing.assert_allclose(diffbench.gradient(made, method="tape/eager", dtype="float64")["out_kernel"], XC.T @ r,
                               rtol=1e-12)


def _activations_by_hand():
    from scipy.special import erf

    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    softplus = lambda z: np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)  # noqa: E731
    relu6 = lambda z: np.clip(z, 0, 6)  # noqa: E731
    a, scale = 1.6732632423543772, 1.0507009873554805  # SELU's constants (Klambauer et al. 2017)
    return {
        "relu": lambda z: np.maximum(z, 0), "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2))),
        "silu": lambda z: z * sig(z), "swish": lambda z: z * sig(z), "sigmoid": sig, "tanh": np.tanh,
        "softplus": softplus, "elu": lambda z: np.where(z > 0, z, np.expm1(z)),
        "leaky_relu": lambda z: np.where(z > 0, z, float(np.float32(0.2)) * z),
        "selu": lambda z: scale * np.where(z > 0, z, a * np.expm1(z)), "softsign": lambda z: z / (1 + np.abs(z)),
        "mish": lambda z: z * np.tanh(softplus(z)), "relu6": relu6, "hard_sigmoid": lambda z: relu6(z + 3) / 6,
        "hard_silu": lambda z: z * relu6(z + 3) / 6, "exponential": np.exp, "linear": lambda z: z,
    }


@pytest.mark.parametrize("activation, by_hand", _activations_by_hand().items(), ids=list(_activations_by_hand()))
def test_each_common_activation_is_written_out(activation, by_hand):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation=activation, name="hidden"),
                              keras.layers.Dense(1, name="out")])
    y = np.array([[1.0], [-1.0], [0.5], [2.0]])
    made = diffbench.keras_case(model, "mse", XC, y, name=f"act_{activation}")
    assert made.problem is None and "no-certified-truth" not in made.tags
    w1, b1, w2, b2 = (v.numpy().astype(np.float64) for v in model.trainable_variables)
    h = by_hand(XC @ w1 + b1)
    # L = mean((h w2 + b2 − y)²) over n rows: dL/dw2 = 2/n hᵀ r, dL/db2 = 2/n Σ r (the activation's values enter)
    r = h @ w2 + b2 - y
    reference = diffbench.gradient(made, method="reference")
    np.testing.assert_allclose(reference["out_kernel"], 2 / len(y) * h.T @ r, rtol=1e-12)
    np.testing.assert_allclose(reference["out_bias"], 2 / len(y) * r.sum(axis=0), rtol=1e-12)


def none_case(native, name):
    @diffbench.case(inputs={"x": [1.0, 2.0]}, name=name)
    def made(x, xp):
        return xp.sum(x**2)

    return made.tensorflow(native)


def _numpy_inside(x):
    import tensorflow as tf

    return tf.reduce_sum(tf.constant(x.numpy()) ** 2)


def _assign_inside(x):
    import tensorflow as tf

    held = tf.Variable(tf.zeros_like(x))
    held.assign(x)
    return tf.reduce_sum(held**2)


def _integer_cast(x):
    import tensorflow as tf

    return tf.reduce_sum(tf.cast(tf.cast(x, tf.int32), x.dtype) ** 2)


_LAYER = []


def _set_weights_inside(x):
    import tensorflow as tf

    if not _LAYER:
        _LAYER.append(keras.layers.Dense(1, use_bias=False, dtype="float64"))
        _LAYER[0].build((None, 2))
    _LAYER[0].set_weights([np.reshape(x, (2, 1))])
    return tf.reduce_sum(_LAYER[0](tf.ones((1, 2), dtype=tf.float64)))


@pytest.mark.parametrize("native, words", [
    (_numpy_inside, "calls .numpy()"),
    (_assign_inside, "assigns to a variable"),
    (_integer_cast, "casts to an integer dtype"),
    (_set_weights_inside, "calls set_weights"),
])
def test_a_none_gradient_names_what_cut_the_tape(native, words):
    with pytest.raises(NoGradient) as raised:
        diffbench.gradient(none_case(native, native.__name__), method="tape/eager")
    assert "TensorFlow returned None for x" in str(raised.value) and words in str(raised.value)


def test_a_none_gradient_without_a_visible_cause_lists_the_usual_ones():
    def unconnected(x):
        import tensorflow as tf

        return tf.constant(1.0, dtype=x.dtype)

    with pytest.raises(NoGradient) as raised:
        diffbench.gradient(none_case(unconnected, "unconnected"), method="tape/eager")
    assert "set_weights/assign" in str(raised.value) and "UnconnectedGradients.ZERO" in str(raised.value)


@pytest.mark.slow
def test_a_keras_case_file_runs_through_the_command_line(tmp_path):
    cases = tmp_path / "models.py"
    cases.write_text(textwrap.dedent('''
        import keras
        import numpy as np
        from diffbench import keras_case

        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1, name="out")])
        mlp = keras_case(model, "mse", np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]), np.array([[1.0], [-1.0]]),
                         name="mlp")
    '''))
    out = subprocess.run([sys.executable, "-m", "diffbench", "run", "--cases", str(cases), "--methods", "tape",
                          "--dtypes", "float64", "--no-order2", "--jobs", "1", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    # 3·4 + 4 + 4 + 1 = 21 weights, within forward mode's budget: every variant is right
    assert dict(zip(df.variant, df.status)) == {"eager": "ok", "function": "ok", "xla": "ok", "forward": "ok"}
