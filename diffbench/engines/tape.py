"""Automatic differentiation with TensorFlow's ``tf.GradientTape``.

Variants: ``eager``; ``function`` (``tf.function``, traced once in ``prepare``);
``xla`` (``tf.function(jit_compile=True)``, compiled in ``prepare``); ``forward``
(``tf.autodiff.ForwardAccumulator``, one Jacobian-vector product per input element,
traced once with ``tf.function``).
A ``None`` gradient is never turned into zeros: it raises :class:`NoGradient`.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any, Callable

import numpy as np

from ..case import Case
from . import EngineInfo, NoGradient, Prepared, Skip, check_scalar

#: forward mode needs one forward pass per scalar input (N eager passes per gradient, where
#: reverse mode needs one); past this many inputs the variant is skipped to keep runs short
MAX_FORWARD_INPUTS = 8
#: the tape Hessian (a Jacobian of the gradient) is formed up to this many inputs
MAX_HESSIAN_INPUTS = 400


def _tf() -> Any:
    from ..quiet import import_tensorflow

    tf = import_tensorflow()  # its start-up lines are silenced unless --verbose

    # TensorFlow's own warnings (an int tensor watched, autograph notes) repeat what rows diagnose
    tf.get_logger().setLevel("ERROR")
    return tf


def gpu_devices() -> dict[str, str]:
    """Device label (``GPU:<name>``) -> TensorFlow device string, for every GPU TensorFlow sees."""
    tf = _tf()
    out = {}
    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", f"GPU{i}")
        except Exception:  # noqa: BLE001 - details are optional
            name = f"GPU{i}"
        out[f"GPU:{name}"] = f"/GPU:{i}"
    return out


def _device_string(device: str) -> str:
    if device == "CPU":
        return "/CPU:0"
    gpus = gpu_devices()
    if device not in gpus:
        raise Skip(f"TensorFlow sees no device {device!r} here (it sees: CPU{', ' if gpus else ''}{', '.join(gpus)})")
    return gpus[device]


def _function_of(case: Case, dtype: str) -> Callable[[list[Any]], Any]:
    """The function the tape differentiates: the native TensorFlow code, or the xp function."""
    if case.native is not None:
        native = case.native
        return lambda args: native(*args)
    from ..namespaces import tensorflow_namespace

    tf = _tf()
    xp = tensorflow_namespace(dtype)
    func = case.func
    # reading each variable as a tensor inside the tape gives xp code the full tensor API (.T, reshape)
    return lambda args: func(*[tf.convert_to_tensor(a) for a in args], xp=xp)


def _inputs(case: Case, dtype: str) -> list[Any]:
    tf = _tf()
    values = []
    for name, value in case.inputs.items():
        if name in case.integer_inputs:
            values.append(tf.constant(value.astype(np.int32)))
        else:
            values.append(tf.Variable(value, dtype=tf.as_dtype(dtype), name=name))
    return values


#: what in a function's source cuts the tape, and what to do instead (checked in this order)
NONE_CAUSES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (".numpy()", re.compile(r"\.numpy\(\s*\)"),
     "it calls .numpy(), which turns a tensor into a NumPy array the tape cannot follow; keep the computation in "
     "TensorFlow ops"),
    ("set_weights", re.compile(r"\bset_weights\s*\("),
     "it calls set_weights, which copies values into the model's variables outside the tape; pass the weights "
     "into the computation instead (model.stateless_call(weights, [], x), or diffbench.keras_case)"),
    ("assign", re.compile(r"\.assign(?:_add|_sub)?\s*\("),
     "it assigns to a variable (assign/assign_add), which the tape does not differentiate through; compute with "
     "the input tensors themselves instead of writing them into variables"),
    ("an integer cast", re.compile(r"(?:tf\.cast\s*\([^)]*tf\.u?int|astype\(\s*(?:int|np\.u?int)|"
                                   r"dtype\s*=\s*(?:tf|np)\.u?int)"),
     "it casts to an integer dtype, which has no gradient; keep floats (round with tf.math.round only where no "
     "gradient is needed)"),
    ("argmax/argmin/round", re.compile(r"\b(?:argmax|argmin|round|floor|ceil)\s*\("),
     "it uses argmax/argmin/round/floor/ceil, whose gradient is None or 0 by definition"),
)


def _user_sources(case: Case) -> str:
    """The source of the code the tape differentiates (the native function and code it names), or ''."""
    sources = []
    native = case.native
    for fn in ([native, *getattr(native, "diffbench_user_code", ())] if native is not None else [case.func]):
        try:
            sources.append(inspect.getsource(fn))
        except (OSError, TypeError):
            continue
    return "\n".join(sources)


def _none_message(case: Case, missing: list[str]) -> str:
    integer = [m for m in missing if m in case.integer_inputs]
    if integer:
        return (f"TensorFlow returned None for {', '.join(integer)}: integer tensors are not differentiable "
                "(the tape does not watch them); give the input as a float, e.g. 3.0")
    source = _user_sources(case)
    found = [advice for _, pattern, advice in NONE_CAUSES if pattern.search(source)]
    head = f"TensorFlow returned None for {', '.join(missing)}: the output is not connected to it on the tape"
    if found:
        return f"{head}; the code the tape runs shows why: " + "; and ".join(found)
    return (f"{head} (it does not influence the result, or only through an operation without a gradient, such as "
            "argmax, round, a cast to an integer, .numpy(), or set_weights/assign inside the function). If 0 is "
            "the answer you mean, pass unconnected_gradients=tf.UnconnectedGradients.ZERO to tape.gradient")


class TapeEngine:
    """``tf.GradientTape`` in its execution modes."""

    name = "tape"
    info = EngineInfo(variants=("eager", "function", "xla", "forward"), default_variant="eager",
                      order2_variant="eager", scaling_variants=("eager", "function", "xla"),
                      run_scaling_variants=("function", "xla"), max_hessian_inputs=MAX_HESSIAN_INPUTS, default=True,
                      gpu=True)

    def variants(self) -> tuple[str, ...]:
        return self.info.variants

    def devices(self) -> list[str]:
        return ["CPU", *gpu_devices()]

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        tf = _tf()
        if variant not in self.variants():
            raise ValueError(f"unknown tape variant {variant!r}; known: {self.variants()}")
        on_gpu = device != "CPU"
        sync = tf.test.experimental.sync_devices if on_gpu else (lambda: None)
        with tf.device(_device_string(device)):
            args = _inputs(case, dtype)
            f = _function_of(case, dtype)
            names = list(case.inputs)
            if variant == "forward":
                return self._forward(case, f, args, names, dtype, sync)

            def step() -> tuple[Any, list[Any]]:
                with tf.GradientTape() as tape:
                    for a in args:
                        if not isinstance(a, tf.Variable):
                            tape.watch(a)
                    y = f(args)
                return y, tape.gradient(y, args)

            def evaluate() -> Any:
                return f(args)

            compiled_step: Callable[[], Any] = step
            compiled_f: Callable[[], Any] = evaluate
            if variant in ("function", "xla"):
                compiled_step = tf.function(step, jit_compile=(variant == "xla"))
                compiled_f = tf.function(evaluate, jit_compile=(variant == "xla"))
            start = time.perf_counter()
            try:
                y, grads = compiled_step()
            except tf.errors.InvalidArgumentError as exc:
                if variant == "xla" and "unsupported operations" in str(exc):
                    ops = sorted(set(re.findall(r"(\w+) \(No registered", str(exc)))) or ["an operation"]
                    raise Skip(f"XLA cannot compile {', '.join(ops)} on this device; the function and eager "
                               "variants run it") from None
                raise
            sync()
            prepare_s = time.perf_counter() - start
            compiled_f()
            check_scalar(case, y, "TensorFlow namespace" if case.native is None else "native TensorFlow code")
            info: dict[str, Any] = {}
            if np.dtype(y.dtype.as_numpy_dtype) != np.dtype(dtype):
                info["note"] = (f"the function returned {y.dtype.name} in a {dtype} run (a constant of another "
                                "dtype promoted it; create constants with xp.asarray)")
            traces = compiled_step.experimental_get_tracing_count() if variant != "eager" else 0

            def gradient() -> dict[str, np.ndarray]:
                _, result = compiled_step()
                missing = [n for n, g in zip(names, result) if g is None]
                values = {n: (None if g is None else np.asarray(g.numpy())) for n, g in zip(names, result)}
                if missing:
                    raise NoGradient(_none_message(case, missing), missing, values)
                return {n: v.reshape(case.inputs[n].shape) for n, v in values.items()}  # type: ignore[union-attr]

            def timed() -> Any:
                out = compiled_step()
                sync()
                return out

            def f_timed() -> Any:
                out = compiled_f()
                sync()
                return out

            def check_stable() -> str | None:
                if variant != "eager" and compiled_step.experimental_get_tracing_count() != traces:
                    return "tf.function retraced while being timed; the time includes tracing"
                return None

            return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=prepare_s, info=info,
                            check_stable=check_stable)

    def _forward(self, case: Case, f: Callable[[list[Any]], Any], args: list[Any], names: list[str], dtype: str,
                 sync: Callable[[], None]) -> Prepared:
        tf = _tf()
        if case.size > MAX_FORWARD_INPUTS:
            raise Skip(f"forward mode needs one pass per input element ({case.size}); over the budget of "
                       f"{MAX_FORWARD_INPUTS} (diffbench.engines.tape.MAX_FORWARD_INPUTS)")

        def jvps() -> list[list[Any]]:
            per_input = []
            for k, (name, arg) in enumerate(zip(names, args)):
                column = []
                if name in case.integer_inputs:
                    per_input.append([None])
                    continue
                for j in range(int(np.prod(arg.shape, dtype=int))):
                    tangent = tf.reshape(tf.one_hot(j, int(np.prod(arg.shape, dtype=int)), dtype=arg.dtype), arg.shape)
                    with tf.autodiff.ForwardAccumulator(primals=arg, tangents=tangent) as acc:
                        y = f(args)
                    column.append(acc.jvp(y))
                per_input.append(column)
            return per_input

        check_scalar(case, f(args), "TensorFlow namespace" if case.native is None else "native TensorFlow code")
        # traced once, like the reverse-mode ``function`` variant: eager forward accumulators cost one
        # Python-level pass per input on every call
        jvps = tf.function(jvps)
        start = time.perf_counter()
        first = jvps()
        sync()
        prepare_s = time.perf_counter() - start

        def gradient() -> dict[str, np.ndarray]:
            out, missing, partial = {}, [], {}
            for name, column in zip(names, first):
                if any(v is None for v in column):
                    missing.append(name)
                    partial[name] = None
                    continue
                out[name] = np.array([np.asarray(v.numpy()).reshape(()) for v in column]).reshape(case.inputs[name].shape)
                partial[name] = out[name]
            if missing:
                raise NoGradient(_none_message(case, missing), missing, partial)
            return out

        def timed() -> Any:
            out = jvps()
            sync()
            return out

        return Prepared(gradient=gradient, timed=timed, f_timed=lambda: f(args), prepare_s=prepare_s)

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        tf = _tf()
        if case.size > MAX_HESSIAN_INPUTS:
            raise Skip(f"{case.size} inputs exceed the tape Hessian budget of {MAX_HESSIAN_INPUTS}")
        args = _inputs(case, dtype)
        f = _function_of(case, dtype)
        names = list(case.inputs)
        with tf.GradientTape(persistent=True) as outer:
            for a in args:
                if not isinstance(a, tf.Variable):
                    outer.watch(a)
            with tf.GradientTape() as inner:
                for a in args:
                    if not isinstance(a, tf.Variable):
                        inner.watch(a)
                y = f(args)
            check_scalar(case, y, "TensorFlow namespace" if case.native is None else "native TensorFlow code")
            grads = inner.gradient(y, args)
            missing = [n for n, g in zip(names, grads) if g is None]
            if missing:
                raise NoGradient(_none_message(case, missing), missing, {})
            flat = tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)
        blocks = outer.jacobian(flat, args, experimental_use_pfor=False)
        missing = [n for n, b in zip(names, blocks) if b is None]
        if missing:
            raise NoGradient(
                f"TensorFlow returned None for the second derivative with respect to {', '.join(missing)}: the "
                "first derivative does not depend on it on the tape (the true second derivative is 0 there); "
                "pass unconnected_gradients=tf.UnconnectedGradients.ZERO to the outer tape", missing, {})
        n = case.size
        return np.concatenate([np.asarray(b.numpy()).reshape(n, -1) for b in blocks], axis=1)
