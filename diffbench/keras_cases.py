"""Cases made from a Keras model and a loss: the loss differentiated with respect to the model's weights.

The case's inputs are the model's trainable weights (named after their paths, ``dense_kernel``,
``dense_bias``, ``dense_1_kernel``...). Its native TensorFlow code is the real model: the tape
differentiates ``loss(y, model(x))`` through ``model.stateless_call(weights, ...)``, which takes
the weights as arguments instead of reading the model's variables, so the gradient flows to
them (calling the model, or ``set_weights``/``assign`` inside the function, would cut it).
Its ``xp`` function is the same mathematics, the truth the tape is checked against: written out
automatically for a chain of ``Dense`` and activation layers with the activations in
:data:`ACTIVATIONS` and the losses in :data:`LOSSES`; for anything else pass ``maths=`` (a
function of the weights, in the case's input order, and ``xp``). Without it such a case has no
certified truth: its tape and finite-difference rows run and say so, and
:func:`check_against_differences` checks the tape against finite differences.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .case import Case, CaseError, make_case

_SQRT_HALF = 0.7071067811865476
_F32_POINT_2 = float(np.float32(0.2))
#: tf.nn.selu's constants
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _relu6(z: Any, xp: Any) -> Any:
    return xp.minimum(xp.maximum(z, 0.0), 6.0)


#: Keras activation name -> the same function in xp names (written so every namespace has it), as
#: Keras 3's TensorFlow backend computes it with the activation's default arguments
ACTIVATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "linear": lambda z, xp: z,
    "relu": lambda z, xp: xp.maximum(z, 0.0),
    "relu6": _relu6,
    # tf.nn.leaky_relu: max(x, αx), α = 0.2 in Keras 3, held by TensorFlow as a float32 attribute
    "leaky_relu": lambda z, xp: xp.maximum(z, _F32_POINT_2 * z),
    "elu": lambda z, xp: xp.where(z > 0, z, xp.expm1(z)),
    "selu": lambda z, xp: _SELU_SCALE * xp.where(z > 0, z, _SELU_ALPHA * xp.expm1(z)),
    "celu": lambda z, xp: xp.maximum(z, 0.0) + xp.minimum(xp.expm1(z), 0.0),
    "gelu": lambda z, xp: 0.5 * z * (1 + xp.erf(z * _SQRT_HALF)),  # the exact form, Keras's default
    "silu": lambda z, xp: z * xp.sigmoid(z),
    "tanh": lambda z, xp: xp.tanh(z),
    "sigmoid": lambda z, xp: xp.sigmoid(z),
    "hard_sigmoid": lambda z, xp: _relu6(z + 3.0, xp) / 6.0,
    "hard_silu": lambda z, xp: z * _relu6(z + 3.0, xp) / 6.0,
    "softplus": lambda z, xp: xp.logaddexp(0.0, z),
    "softsign": lambda z, xp: z / (1 + xp.abs(z)),
    "mish": lambda z, xp: z * xp.tanh(xp.logaddexp(0.0, z)),
    "squareplus": lambda z, xp: (z + xp.sqrt(z * z + 4.0)) / 2,
    "tanh_shrink": lambda z, xp: z - xp.tanh(z),
    "exponential": lambda z, xp: xp.exp(z),
    "softmax": lambda z, xp: xp.softmax(z, axis=-1),
    "log_softmax": lambda z, xp: z - xp.logsumexp(z, axis=-1, keepdims=True),
}
#: activations whose output carries its input as logits for Keras's cross-entropies (``_keras_logits``)
_KERAS_LOGITS = ("softmax", "sigmoid")


def _cross_entropy(y: Any, p: Any, logits: Any, xp: Any) -> Any:
    if logits is not None:  # tf.nn.softmax_cross_entropy_with_logits
        return xp.mean(-xp.sum(y * (logits - xp.logsumexp(logits, axis=-1, keepdims=True)), axis=-1))
    p = p / xp.sum(p, axis=-1, keepdims=True)
    p = xp.clip(p, _EPSILON, 1 - _EPSILON)
    return xp.mean(-xp.sum(y * xp.log(p), axis=-1))


def _sparse_cross_entropy(y: Any, p: Any, logits: Any, xp: Any) -> Any:
    # y arrives one-hot (see _targets); tf.nn.sparse_softmax_cross_entropy_with_logits of the logits, or of
    # log(clip(p)) when the output is not a softmax's
    z = logits if logits is not None else xp.log(xp.clip(p, _EPSILON, 1 - _EPSILON))
    return xp.mean(-xp.sum(y * (z - xp.logsumexp(z, axis=-1, keepdims=True)), axis=-1))


def _binary_cross_entropy(y: Any, p: Any, logits: Any, xp: Any) -> Any:
    if logits is not None:  # tf.nn.sigmoid_cross_entropy_with_logits: softplus(z) − z·y
        return xp.mean(xp.logaddexp(0.0, logits) - logits * y)
    p = xp.clip(p, _EPSILON, 1 - _EPSILON)
    return xp.mean(-(y * xp.log(p) + (1 - y) * xp.log(1 - p)))


#: keras.config.epsilon(), the clip Keras's cross-entropies apply to probabilities
_EPSILON = 1e-7

#: Keras loss name -> the mean over the batch, in xp names (``y`` the targets, ``p`` the predictions, ``logits``
#: the input of a final softmax or sigmoid, which Keras's cross-entropies use instead of ``p``, or None)
LOSSES: dict[str, Callable[[Any, Any, Any, Any], Any]] = {
    "mean_squared_error": lambda y, p, logits, xp: xp.mean((p - y) ** 2),
    "mean_absolute_error": lambda y, p, logits, xp: xp.mean(xp.abs(p - y)),
    "categorical_crossentropy": _cross_entropy,
    "sparse_categorical_crossentropy": _sparse_cross_entropy,
    "binary_crossentropy": _binary_cross_entropy,
}
_LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "MeanSquaredError": "mean_squared_error",
                 "MeanAbsoluteError": "mean_absolute_error", "CategoricalCrossentropy": "categorical_crossentropy",
                 "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
                 "BinaryCrossentropy": "binary_crossentropy"}


def _weight_names(variables: Sequence[Any]) -> list[str]:
    """Python identifiers for the weights (``dense/kernel`` -> ``dense_kernel``), unique, in order."""
    names: list[str] = []
    for k, variable in enumerate(variables):
        path = str(getattr(variable, "path", None) or getattr(variable, "name", f"w{k}"))
        parts = [p for p in re.split(r"[/:]", path) if p and not p.isdigit()][-2:]
        name = re.sub(r"\W", "_", "_".join(parts)) or f"w{k}"
        name = f"w_{name}" if name[0].isdigit() else name
        unique, n = name, 1
        while unique in names or unique == "xp":
            n += 1
            unique = f"{name}_{n}"
        names.append(unique)
    return names


def _loss_name(loss: Any) -> str | None:
    """The name of a Keras loss given as a string, a function or a loss object, or None for another callable."""
    if not isinstance(loss, str):
        fn = getattr(loss, "fn", None)  # a Keras 3 loss object wraps its function
        name = getattr(fn, "__name__", None) or getattr(loss, "__name__", None) or type(loss).__name__
    else:
        name = loss
    name = _LOSS_ALIASES.get(name, name)
    return name if name in LOSSES else None


def _loss_options(loss: Any) -> dict[str, Any]:
    """The options a Keras loss object was made with (``from_logits``, ``label_smoothing``...)."""
    options = dict(getattr(loss, "_fn_kwargs", None) or {})
    return options


def _activation_name(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or str(fn)
    return {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)


def _layer_step(layer: Any) -> tuple[str, Any]:
    """What one layer does, as ``("dense", (use_bias, activation name))`` or ``("activation", name)``; raises
    CaseError for a layer that cannot be written."""
    kind = type(layer).__name__
    if kind == "Dense":
        return "dense", (bool(layer.use_bias), _activation_name(layer.activation))
    if kind == "Activation":
        return "activation", _activation_name(layer.activation)
    if kind == "Softmax" and getattr(layer, "axis", -1) in (-1, None):
        return "activation", "softmax"
    if kind == "ReLU" and not layer.max_value and not layer.negative_slope and not layer.threshold:
        return "activation", "relu"
    if kind == "LeakyReLU" and 0 <= float(layer.negative_slope) <= 1:
        return "leaky", float(np.float32(layer.negative_slope))  # a float32 attribute of TensorFlow's op
    if kind == "ELU":
        return "elu", float(layer.alpha)
    if kind == "Dropout":
        return "identity", None  # the native code calls the model with training=False
    raise CaseError(f"keras_case: cannot write layer {layer.name!r} ({kind}) in xp names; Dense layers, activations "
                    "(Activation, Softmax, ReLU, LeakyReLU, ELU) and Dropout are written automatically")


def _targets(loss_name: str, y: np.ndarray, width: int) -> np.ndarray:
    """The targets as the written loss takes them: class labels become one-hot rows for the sparse loss."""
    if loss_name != "sparse_categorical_crossentropy":
        return y
    labels = np.asarray(y).reshape(-1)
    if not np.all(labels == np.round(labels)) or labels.min() < 0 or labels.max() >= width:
        raise CaseError(f"keras_case: sparse_categorical_crossentropy needs class labels 0..{width - 1} in y, "
                        f"got {labels.tolist()}")
    return np.eye(width)[labels.astype(int)]


def dense_maths(model: Any, loss: Any, x: np.ndarray, y: np.ndarray) -> Callable[..., Any]:
    """The xp function of a chain of Dense and activation layers and a loss of :data:`LOSSES`: ``f(*weights, xp)``.

    Softmax and sigmoid outputs are followed as Keras follows them: its cross-entropies read the activation's
    input (the logits) instead of the probabilities. Raises CaseError naming the first layer, activation or loss
    it cannot write, and what to pass instead.
    """
    steps = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        step = _layer_step(layer)
        activation = step[1][1] if step[0] == "dense" else step[1] if step[0] == "activation" else None
        if activation is not None and activation not in ACTIVATIONS:
            raise CaseError(f"keras_case: cannot write activation {activation!r} of layer {layer.name!r} in xp "
                            f"names (known: {', '.join(ACTIVATIONS)})")
        steps.append(step)
    loss_name = _loss_name(loss)
    if loss_name is None:
        raise CaseError(f"keras_case: cannot write the loss {loss!r} in xp names (known: {', '.join(LOSSES)})")
    options = _loss_options(loss)
    if options.get("label_smoothing"):
        raise CaseError(f"keras_case: cannot write {loss_name} with label_smoothing={options['label_smoothing']}")
    if options.get("axis", -1) not in (-1, None):
        raise CaseError(f"keras_case: cannot write {loss_name} over axis {options['axis']}; only the last axis")
    from_logits = bool(options.get("from_logits", False))
    to_loss = LOSSES[loss_name]
    width = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else int(np.shape(y)[-1])
    targets = _targets(loss_name, np.asarray(y, dtype=np.float64), width)

    def maths(*weights: Any, xp: Any) -> Any:
        out = xp.asarray(x.tolist())
        logits, at = None, 0
        for kind, value in steps:
            if kind == "dense":
                use_bias, activation = value
                out = out @ weights[at]
                at += 1
                if use_bias:
                    out = out + weights[at]
                    at += 1
            elif kind == "activation":
                activation = value
            elif kind == "leaky":
                out, logits = xp.maximum(out, value * out), None
                continue
            elif kind == "elu":
                out, logits = xp.where(out > 0, out, value * xp.expm1(out)), None
                continue
            else:
                continue
            # Keras's cross-entropies read the input of a final softmax or sigmoid as logits; an identity
            # Activation layer keeps the tensor (and its logits), anything else makes a new one
            keep = kind == "activation" and activation == "linear"
            logits = out if activation in _KERAS_LOGITS else (logits if keep else None)
            out = ACTIVATIONS[activation](out, xp)
        if from_logits and logits is None:
            logits = out
        return to_loss(xp.asarray(targets.tolist()), out, logits, xp)

    return maths


def _with_signature(name: str, params: list[str], body: Callable[..., Any]) -> Callable[..., Any]:
    """A function ``name(p1, p2, ..., xp)`` calling ``body(p1, p2, ..., xp=xp)``: a case names its inputs by its
    positional parameters."""
    scope: dict[str, Any] = {"_body": body}
    arguments = ", ".join(params)
    exec(f"def {name}({arguments}, xp):\n    return _body({arguments}, xp=xp)\n", scope)  # noqa: S102
    return scope[name]


def keras_case(model: Any, loss: Any, x: Any, y: Any, *, name: str, maths: Callable[..., Any] | None = None,
               tags: Sequence[str] = ("keras",), expect: dict[str, str] | None = None) -> Case:
    """A case: ``loss(y, model(x))`` (its mean over the batch) as a function of ``model``'s trainable weights.

    ``model`` is a built Keras 3 model; ``loss`` a Keras loss name (``"mse"``), function or object, or any
    ``loss(y_true, y_pred)`` of TensorFlow ops; ``x``, ``y`` the batch (held fixed). The inputs are the weights'
    current values, named after their paths. The tape differentiates the real model in the run's dtype (a
    clone of ``model`` per dtype, through ``model.stateless_call``). ``maths(*weights, xp)`` is the same loss in
    xp names; left out, it is written from the model when the model is a chain of Dense layers with a known
    activation and loss. Otherwise the case has no certified truth: it is tagged ``no-certified-truth``, its
    tape and finite-difference rows run (the finite differences evaluate the model itself) and say that no
    reference exists, and :func:`check_against_differences` checks the tape against the differences.
    Assign the result to a module-level name in a case file. Never raises for a model it cannot write.
    """
    caller = sys._getframe(1).f_code  # the case file: workers load the case from there
    x_array, y_array = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    weights = list(model.trainable_variables)
    names = _weight_names(weights)
    native = _native(model, loss, x_array, y_array)
    unwritten = None
    if maths is None:
        try:
            maths = dense_maths(model, loss, x_array, y_array)
        except CaseError as exc:
            unwritten = str(exc)
            maths = _numeric_only(native, unwritten)
            tags = (*tuple(tags or ()), NO_CERTIFIED_TRUTH)
    identifier = re.sub(r"\W", "_", name) or "keras_model"
    func = _with_signature(identifier, names, maths)
    inputs = {n: np.asarray(w.numpy(), dtype=np.float64) for n, w in zip(names, weights)}
    made = make_case(func, inputs, tags=tags, expect=expect, name=name)
    made.source_file, made.line = caller.co_filename, caller.co_firstlineno
    made.native = native
    if unwritten:
        made.doc = (f"No certified truth: {unwritten}. The tape is checked against finite differences only "
                    "(diffbench.keras_cases.check_against_differences); pass maths= for a certified reference.")
    return made


#: the tag of a Keras case whose maths could not be written: it has no certified truth
NO_CERTIFIED_TRUTH = "no-certified-truth"


def _numeric_only(native: Callable[..., Any], why: str) -> Callable[..., Any]:
    """An xp function that evaluates the model itself, in NumPy's namespace only (finite differences); the
    reference and the symbolic method have no maths to follow, and say so."""
    from .errors import ReferenceUnavailable, Skip

    reason = (f"no certified truth exists for this Keras case: {why}. The tape is checked against finite "
              "differences only (diffbench.keras_cases.check_against_differences); pass maths=lambda *weights, xp: "
              "... (the loss in xp names) for a certified reference")

    def maths(*weights: Any, xp: Any) -> Any:
        label = str(getattr(xp, "label", ""))
        if label.startswith(("SymPy", "SymEngine")):
            raise Skip(reason)
        if not label.startswith("NumPy"):
            raise ReferenceUnavailable(reason)
        import tensorflow as tf

        arrays = [np.asarray(w) for w in weights]
        if any(np.iscomplexobj(a) for a in arrays):
            raise TypeError("a Keras model takes no complex weights: the complex step does not apply")
        return native(*[tf.constant(a) for a in arrays]).numpy()

    return maths


def check_against_differences(made: Case, dtype: str = "float64") -> None:
    """Check the tape gradient of a Keras case's real model against Richardson-extrapolated differences with
    their error estimate, as :func:`diffbench.assert_gradients` does without a reference (the check for a case
    with no certified truth). Raises AssertionError naming the worst elements when they disagree."""
    from .testing import assert_gradients

    if made.native is None:
        raise ValueError(f"case {made.name!r} has no native TensorFlow code to check")
    names = list(made.inputs)
    native = made.native

    def loss(**weights: Any) -> Any:
        return native(*[weights[n] for n in names])

    loss.__name__ = made.name
    assert_gradients(loss, {n: np.asarray(v, dtype=dtype) for n, v in made.inputs.items()})


def _native(model: Any, loss: Any, x: np.ndarray, y: np.ndarray) -> Callable[..., Any]:
    """``loss(y, model(x))`` through ``stateless_call`` with the given weights, in their dtype."""
    clones: dict[str, Any] = {}

    def native(*weights: Any) -> Any:
        import keras
        import tensorflow as tf

        dtype = weights[0].dtype.name
        if dtype not in clones:
            # a model computes in its own dtype policy: float64 rows need a float64 copy of it
            # (its input too: an input layer left in float32 would round x before the first layer)
            clones[dtype] = model if model.dtype == dtype else keras.models.clone_model(
                model, input_tensors=keras.Input(shape=tuple(x.shape[1:]), dtype=dtype),
                clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": dtype}))
        copy = clones[dtype]
        non_trainable = [tf.cast(v.value, dtype) for v in copy.non_trainable_variables]
        out, _ = copy.stateless_call(list(weights), non_trainable, tf.constant(x, dtype=dtype), training=False)
        loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        return tf.reduce_mean(loss_fn(tf.constant(y, dtype=dtype), out))

    native.diffbench_user_code = (loss,)  # type: ignore[attr-defined]
    return native
