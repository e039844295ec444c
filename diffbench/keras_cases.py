"""Cases made from a Keras model and a loss: the loss differentiated with respect to the model's weights.

The case's inputs are the model's trainable weights (named after their paths, ``dense_kernel``,
``dense_bias``, ``dense_1_kernel``...). Its native TensorFlow code is the real model: the tape
differentiates ``loss(y, model(x))`` through ``model.stateless_call(weights, ...)``, which takes
the weights as arguments instead of reading the model's variables, so the gradient flows to
them (calling the model, or ``set_weights``/``assign`` inside the function, would cut it).
Its ``xp`` function is the same mathematics, the truth the tape is checked against: written out
automatically for a chain of ``Dense`` layers with the activations in :data:`ACTIVATIONS` and
the losses in :data:`LOSSES`; for anything else pass ``maths=`` (a function of the weights, in
the case's input order, and ``xp``).
"""

from __future__ import annotations

import re
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .case import Case, CaseError, make_case

#: Keras activation name -> the same function in xp names (written so every namespace has it)
ACTIVATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "linear": lambda z, xp: z,
    "relu": lambda z, xp: xp.maximum(z, 0.0),
    "tanh": lambda z, xp: xp.tanh(z),
    "sigmoid": lambda z, xp: 1 / (1 + xp.exp(-z)),
    "softplus": lambda z, xp: xp.logaddexp(0.0, z),
    "exponential": lambda z, xp: xp.exp(z),
}
#: Keras loss name -> the mean over the batch, in xp names (``y`` the targets, ``p`` the predictions)
LOSSES: dict[str, Callable[[Any, Any, Any], Any]] = {
    "mean_squared_error": lambda y, p, xp: xp.mean((p - y) ** 2),
    "mean_absolute_error": lambda y, p, xp: xp.mean(xp.abs(p - y)),
}
_LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "MeanSquaredError": "mean_squared_error",
                 "MeanAbsoluteError": "mean_absolute_error"}


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
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", None) or type(loss).__name__
    name = _LOSS_ALIASES.get(name, name)
    return name if name in LOSSES else None


def dense_maths(model: Any, loss: Any, x: np.ndarray, y: np.ndarray) -> Callable[..., Any]:
    """The xp function of a chain of Dense layers and a loss of :data:`LOSSES`: ``f(*weights, xp)``.

    Raises CaseError naming the first layer, activation or loss it cannot write, and what to pass instead.
    """
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind != "Dense":
            raise CaseError(f"keras_case: cannot write layer {layer.name!r} ({kind}) in xp names; only chains of "
                            "Dense layers are written automatically: pass maths=lambda *weights, xp: ...")
        activation = getattr(layer.activation, "__name__", str(layer.activation))
        if activation not in ACTIVATIONS:
            raise CaseError(f"keras_case: cannot write activation {activation!r} of layer {layer.name!r} in xp "
                            f"names (known: {', '.join(ACTIVATIONS)}); pass maths=")
        layers.append((bool(layer.use_bias), ACTIVATIONS[activation]))
    loss_name = _loss_name(loss)
    if loss_name is None:
        raise CaseError(f"keras_case: cannot write the loss {loss!r} in xp names (known: {', '.join(LOSSES)}); "
                        "pass maths=")
    to_loss = LOSSES[loss_name]

    def maths(*weights: Any, xp: Any) -> Any:
        out = xp.asarray(x.tolist())
        at = 0
        for use_bias, activation in layers:
            out = out @ weights[at]
            at += 1
            if use_bias:
                out = out + weights[at]
                at += 1
            out = activation(out, xp)
        return to_loss(xp.asarray(y.tolist()), out, xp)

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
    activation and loss (otherwise the case carries a problem saying what to pass, and its rows are errors).
    Assign the result to a module-level name in a case file. Never raises for a model it cannot write.
    """
    caller = sys._getframe(1).f_code  # the case file: workers load the case from there
    x_array, y_array = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    weights = list(model.trainable_variables)
    names = _weight_names(weights)
    problem = None
    if maths is None:
        try:
            maths = dense_maths(model, loss, x_array, y_array)
        except CaseError as exc:
            problem = str(exc)
    identifier = re.sub(r"\W", "_", name) or "keras_model"
    func = _with_signature(identifier, names, maths or (lambda *w, xp: xp.sum(w[0])))
    inputs = {n: np.asarray(w.numpy(), dtype=np.float64) for n, w in zip(names, weights)}
    made = make_case(func, inputs, tags=tags, expect=expect, name=name)
    made.source_file, made.line = caller.co_filename, caller.co_firstlineno
    if problem and not made.problem:
        made.problem = problem
    made.native = _native(model, loss, x_array, y_array)
    return made


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
