"""Automatic differentiation with TensorFlow's ``tf.GradientTape``.

Variants: ``eager``; ``function`` (``tf.function``, traced once in ``prepare``);
``xla`` (``tf.function(jit_compile=True)``, compiled in ``prepare``); ``forward``
(``tf.autodiff.ForwardAccumulator``: the Jacobian-vector products with every basis vector
of the flattened inputs, pushed through the function together by ``tf.vectorized_map``,
traced once with ``tf.function``; up to ``MAX_FORWARD_INPUTS`` inputs; up to
``UNROLL_MAX_TANGENTS`` tangents, one accumulator per tangent side by side in the same kind of
traced call, which traces faster).

Where TensorFlow cannot vectorise an operation of the case, the forward variant pushes the
tangents one at a time (``tf.map_fn``) inside the same traced function. The row's
``evaluation`` column (``Prepared.info["evaluation"]``) says which: ``unrolled``,
``vectorized`` or ``loop``; for ``loop``, ``info["note"]``, which the row's diagnosis carries,
names the operation's error.

The Hessian (``TapeEngine.hessian``, any variant) is the Jacobian of the reverse-mode
gradient, taken by ``tape.jacobian`` with ``experimental_use_pfor`` (all N rows in one
vectorised reverse pass), traced once; where pfor cannot vectorise, it is taken row by row
in the traced function. Up to ``MAX_HESSIAN_INPUTS`` inputs. (Forward-over-reverse, a
``ForwardAccumulator`` over the gradient, was no faster here and turns an overflowed
``inf`` second derivative into ``nan``: TensorFlow's JVP rules multiply by zero tangents.)

A ``None`` gradient is never turned into zeros: it raises :class:`NoGradient`. Forward
mode decides which inputs are unconnected while tracing (with several inputs, one
accumulator per input), so it names the same inputs reverse mode would.

Vector outputs (a case returning an array of shape S, see ``engines.output_shape``): ``gradient()``
returns the Jacobian, per input of shape I an array of shape S + I, and ``timed()`` evaluates all of it.
``eager``, ``function`` and ``xla`` take ``tape.jacobian`` with pfor (TensorFlow's default: the m
reverse passes vectorised into one); where pfor cannot convert the function, the same variant takes
the while-loop path and its ``evaluation`` column says ``loop``. Two variants exist for vector
outputs only (``EngineInfo.jacobian_variants``): ``loop``, ``tape.jacobian(...,
experimental_use_pfor=False)`` (one reverse pass per output component in a ``tf.while_loop``),
and ``batch``, ``tape.batch_jacobian`` for a case tagged ``batch`` (axis 0 of its first input and
of its output is a batch axis): the per-example blocks, laid out as the full block-diagonal
Jacobian with zeros off the blocks (the other inputs by ``tape.jacobian``; ``timed()`` takes the blocks,
the layout is NumPy work in ``gradient()``); on a case without the
tag it raises Skip. Both are traced once with ``tf.function``, as ``function`` is. (In eager mode
TensorFlow converts the pfor loop into a new ``tf.function`` on every ``tape.jacobian`` call, so the
``eager`` row's time includes that tracing: tens of milliseconds per Jacobian, what an eager caller
pays.) ``forward`` pushes
the N basis tangents through the function in one vectorised pass, as for gradients, each giving a
column of the Jacobian.

For a Jacobian, an input that no output depends on is not an error: TensorFlow's ``tape.jacobian``
returns ``None`` for it (and zeros, inside pfor, for an output component that does not depend on an
input others do), and the engine returns the zero block that
``unconnected_gradients=tf.UnconnectedGradients.ZERO`` would give, but records the names in
``Prepared.info["unconnected"]`` (a list of input names; absent when there are none), so that what
TensorFlow said is reported while the zero block is judged against the certified reference. An
integer input still raises :class:`NoGradient`. ``hessian`` of a vector case raises Skip.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import time
from typing import Any, Callable, Iterator

import numpy as np

from .. import nested, products
from ..products import PRODUCT_VARIANTS
from ..case import Case
from . import BATCH_TAG, EngineInfo, NoGradient, OverBudget, Prepared, Skip, check_output, check_scalar, output_shape

#: forward mode pushes one tangent per scalar input through the function, all N in one vectorised
#: pass: time and memory grow N-fold over one evaluation (reverse mode needs one backward pass).
#: Past this many inputs the variant is ``skipped``, saying so.
MAX_FORWARD_INPUTS = 1000
#: the tape Hessian (the Jacobian of the gradient, its N rows in one vectorised pass: N-fold the
#: memory of one gradient) is formed up to this many inputs; past it ``hessian`` raises Skip
MAX_HESSIAN_INPUTS = 400
#: tracing a case into a graph (``function``, ``forward``, the Hessian) and compiling it (``xla``) costs about this
#: many times the eager gradient's first call, which runs the same Python once: ratios measured on gradbench's
#: long unrolled cases (det by minors, LSTM, the particle's Euler steps with a gradient inside each). Measured:
#: function 6 to 16 (det at ℓ = 6: 12 and 16 in two runs; the particle: 11.5 and 12 at its two steps), forward
#: 14 (the particle) to 31 (det, ℓ = 4), the Hessian 18 to 50; XLA 6 (det, ℓ = 4) to 31 (the particle's steps
#: unnested) and past 95 (the same with ∇ₓp by xp.grad, still compiling at 120 s)
TRACE_COST = {"function": 12.0, "xla": 50.0, "forward": 25.0, "hessian": 40.0}
#: ... where the case opens a tape inside its tape (``xp.grad``): XLA compiles the nested backward pass too
#: (the particle with ∇ₓp by xp.grad: past 95 times its eager first call, 131 s at dt = 0.5)
TRACE_COST_NESTED = {**TRACE_COST, "xla": 100.0}
#: a traced variant whose predicted tracing (``TRACE_COST`` × the eager gradient's first call, measured
#: earlier in the same run) passes this many seconds is ``skipped`` with the prediction, before tracing
MAX_TRACE_S = 60.0


def _tf() -> Any:
    from ..quiet import import_tensorflow

    tf = import_tensorflow()  # its start-up lines are silenced unless --verbose

    # TensorFlow's own warnings (an int tensor watched, autograph notes) repeat what rows diagnose
    if tf.get_logger().level < logging.ERROR:  # a stricter level set for a while (see _over_basis) stays
        tf.get_logger().setLevel(logging.ERROR)
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


@contextlib.contextmanager
def _graph_branch_skip(variant: str, eager: Callable[[], Any] | None = None,
                       case: Case | None = None) -> Iterator[None]:
    """A case whose Python ``if``/``while`` on a value autograph cannot turn into graph control flow (a loop
    condition that starts as a Python value and becomes a tensor; a tensor used as a bool where autograph does not
    convert) is skipped in a traced variant with the reason; eager runs it. Decided by the exception's type and
    where it was raised (autograph's control-flow operators), not by its text.

    With ``eager`` (the same computation without tracing) and an xp ``case``, a TypeError, ValueError,
    NotImplementedError or AssertionError (autograph's checks of an ``if`` it converted) raised while tracing is
    skipped too when ``eager()`` runs: the Python is valid and only
    its conversion to a graph fails (a loop variable that starts as a Python int and becomes a float tensor, whose
    dtype autograph requires to stay fixed). Where ``eager()`` fails too, the error is the case's own."""
    tf = _tf()
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - anything else is raised again unchanged
        if not _autograph_branch_error(tf, exc):
            if eager is None or case is None or case.native is not None or \
                    not isinstance(exc, (TypeError, ValueError, NotImplementedError, AssertionError)):
                raise
            try:
                eager()
            except Exception:  # noqa: BLE001 - the case fails without tracing too: the tracing error is its own
                raise exc from None
            said = [line.strip() for line in str(exc).splitlines()
                    if line.strip() and line.strip() not in (type(exc).__name__, f"{type(exc).__name__}:")]
            last = said[-1] if said else "no message"
            last = last[len(type(exc).__name__) + 2:] if last.startswith(f"{type(exc).__name__}: ") else last
            raise Skip(f"tape/{variant} traces the case into a graph, and tracing fails where the eager variant "
                       f"runs the same code ({type(exc).__name__}: {last}): the Python is valid, and autograph's "
                       "conversion of it into graph control flow refuses it (autograph has rules plain Python does "
                       "not: a loop variable keeps its dtype and shape across iterations, a `return` under an `if` "
                       "on a tensor needs one on every branch); the eager row measures this code, or rewrite it for "
                       "autograph (e.g. start loop variables as xp arrays of the input's dtype)") from None
        raise Skip(f"tape/{variant} traces the case into a graph, and autograph cannot convert its data-dependent "
                   f"`if`/`while` ({type(exc).__name__}: e.g. a loop condition that starts as a Python number and "
                   "becomes a tensor); the eager variant follows Python's control flow, or start the loop's "
                   "variables as xp arrays") from None


def _autograph_branch_error(tf: Any, exc: BaseException) -> bool:
    if isinstance(exc, tf.errors.OperatorNotAllowedInGraphError):
        return True
    if not isinstance(exc, NotImplementedError):
        return False
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    parts = (last or "").replace("\\", "/").split("/")
    # raised by autograph's control-flow operators, or re-raised from the code autograph generated for the case
    return "autograph" in parts or parts[-1].startswith("__autograph_generated")


def _check_trace_cost(case: Case, variant: str, dtype: str, device: str) -> None:
    """Raise OverBudget where tracing ``case`` for ``variant`` is predicted past ``MAX_TRACE_S``: ``TRACE_COST``
    times the eager gradient's first call (kept on the case by the eager variant, measured before the traced
    ones); no prediction without it."""
    eager = case.__dict__.get("_tape_eager_s", {}).get((dtype, device))
    nested = case.__dict__.get("_tape_nested", False)
    factor = (TRACE_COST_NESTED if nested else TRACE_COST).get(variant)
    if eager is None or factor is None or factor * eager <= MAX_TRACE_S:
        return
    what = "tracing and compiling" if variant == "xla" else "tracing"
    target = "the tape Hessian" if variant == "hessian" else f"tape/{variant}"
    table = "TRACE_COST_NESTED: the case takes a gradient inside (xp.grad)" if nested else "TRACE_COST"
    raise OverBudget(f"{what} the case for {target} would take about {factor * eager:.0f} s ({factor:g} times "
                     f"the {eager:.2g} s the eager gradient's first call took; diffbench.engines.tape.{table}), "
                     f"past the tracing budget of {MAX_TRACE_S:g} s (diffbench.engines.tape.MAX_TRACE_S): a long "
                     "unrolled computation; the eager variant measures it")


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


def _second_none_message(case: Case, missing: list[str]) -> str:
    """What TensorFlow's None for a second derivative means on the tape, without any claim about the true
    second derivative (the caller adds what the certified reference shows)."""
    source = _user_sources(case)
    why = ""
    if re.search(r"\bstop_gradient\s*\(", source):
        why = ("; the code the tape runs calls stop_gradient, which cuts the second-order path (a "
               "tf.custom_gradient whose backward pass stops gradients through its inputs)")
    elif re.search(r"\bcustom_gradient\b", source):
        why = ("; the code the tape runs has a tf.custom_gradient, whose backward pass the outer tape follows: "
               "it does not depend on the input there")
    return (f"TensorFlow returned None for the second derivative with respect to {', '.join(missing)}: on the tape "
            f"the first derivative does not depend on it{why}")


def _split(tangent: Any, primals: list[Any]) -> list[Any]:
    """One flat tangent cut into pieces shaped like ``primals``."""
    tf = _tf()
    sizes = [int(np.prod(p.shape, dtype=int)) for p in primals]
    return [tf.reshape(part, p.shape) for part, p in zip(tf.split(tangent, sizes), primals)]


def _gradients(f: Callable[[list[Any]], Any], args: list[Any]) -> list[Any]:
    """Reverse-mode gradients of ``f`` with respect to every argument (``None`` where unconnected)."""
    tf = _tf()
    with tf.GradientTape() as tape:
        for a in args:
            if not isinstance(a, tf.Variable):
                tape.watch(a)
        y = f(args)
    return _dense(tape.gradient(y, args))


def _dense(grads: list[Any]) -> list[Any]:
    """The gradients as dense tensors: a gathered variable (``xp.take``, ``tf.gather``) gets ``IndexedSlices``,
    which users densify to use (part of the gradient's cost, so it is timed with it)."""
    tf = _tf()
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def _forward_unconnected(f: Callable[[list[Any]], Any], args: list[Any], floats: list[int]) -> set[int]:
    """Indices of the float arguments the output does not depend on in forward mode.

    Decided while tracing (nothing is run): one accumulator per argument, so that an
    unconnected argument reads ``None`` as in reverse mode rather than a zero column of
    the pass over all of them.
    """
    tf = _tf()
    unconnected: set[int] = set()

    def probe() -> Any:
        unconnected.clear()
        for k in floats:
            with tf.autodiff.ForwardAccumulator(primals=args[k], tangents=tf.zeros_like(args[k])) as acc:
                y = f(args)
            if acc.jvp(y) is None:
                unconnected.add(k)
        return tf.constant(0)

    tf.function(probe).get_concrete_function()
    return unconnected


def _cause(exc: BaseException) -> str:
    """The line of a traced error that names its cause (autograph wraps it in "in user code:" and frames)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"\w+(?:Error|Exception): ", line)]
    text = (named or lines or [type(exc).__name__])[-1]
    return text if len(text) <= 200 else text[:197] + "..."


#: up to this many tangents, forward mode traces one accumulator per tangent side by side (``unrolled``):
#: TensorFlow traces that faster than it converts one for ``tf.vectorized_map`` (0.1 s against 0.16 s on
#: average over the case library), and it runs as one traced call all the same
UNROLL_MAX_TANGENTS = 8


def _over_basis(one: Callable[[Any], Any], primals: list[Any], dtype: str, output: Any
                ) -> tuple[Any, str, str | None]:
    """A ``tf.function`` stacking ``one(e_j)`` (of type ``output``, a ``tf.TensorSpec``) over every basis vector
    e_j of the flattened ``primals``, traced here; how it pushes them (``unrolled`` for a few tangents,
    ``vectorized``: one ``tf.vectorized_map`` pass, ``loop``: ``tf.map_fn`` where TensorFlow cannot
    vectorise an operation); and for ``loop``, the reason."""
    tf = _tf()
    n = sum(int(np.prod(p.shape, dtype=int)) for p in primals)
    if n <= UNROLL_MAX_TANGENTS:
        def unrolled() -> Any:
            basis = tf.eye(n, dtype=tf.as_dtype(dtype))
            return tf.stack([one(basis[j]) for j in range(n)])

        side_by_side = tf.function(unrolled)
        side_by_side.get_concrete_function()
        return side_by_side, "unrolled", None

    def build(vectorise: bool) -> Any:
        def over_basis() -> Any:
            basis = tf.eye(n, dtype=tf.as_dtype(dtype))
            if vectorise:
                return tf.vectorized_map(one, basis, fallback_to_while_loop=False)
            return tf.map_fn(one, basis, fn_output_signature=output)

        return tf.function(over_basis)

    vectorised = build(True)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # pfor logs the op it failed on at ERROR level; the reason is kept below
    try:
        vectorised.get_concrete_function()
        return vectorised, "vectorized", None
    except Exception as exc:  # noqa: BLE001 - pfor raises ValueError/NotImplementedError/TypeError for an op
        reason = _cause(exc)
    finally:
        logger.setLevel(level)
    looped = build(False)
    looped.get_concrete_function()
    return looped, "loop", reason


class TapeEngine:
    """``tf.GradientTape`` in its execution modes."""

    name = "tape"
    info = EngineInfo(variants=("eager", "function", "xla", "forward", "loop", "batch", "jvp", "vjp"), default_variant="eager",
                      order2_variants=("eager",), scaling_variants=("eager", "function", "xla", "forward"),
                      run_scaling_variants=("function", "xla", "forward"), max_hessian_inputs=MAX_HESSIAN_INPUTS, default=True,
                      gpu=True, jacobian_variants=("loop", "batch", "jvp", "vjp"),
                      tag_variants={"batch": BATCH_TAG})

    def variants(self) -> tuple[str, ...]:
        return self.info.variants

    def devices(self) -> list[str]:
        return ["CPU", *gpu_devices()]

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        if variant in PRODUCT_VARIANTS:  # J·v and uᵀ·J without the matrix: one module for every method
            return products.prepare(self.name, case, variant, dtype, device)
        tf = _tf()
        if variant not in self.variants():
            raise ValueError(f"unknown tape variant {variant!r}; known: {self.variants()}")
        on_gpu = device != "CPU"
        sync = tf.test.experimental.sync_devices if on_gpu else (lambda: None)
        with tf.device(_device_string(device)):
            args = _inputs(case, dtype)
            f = _function_of(case, dtype)
            names = list(case.inputs)
            if output_shape(case):
                if variant == "forward":
                    return _forward_jacobian(case, f, args, names, dtype, sync)
                return _reverse_jacobian(case, f, args, names, dtype, variant, sync)
            if variant in self.info.jacobian_variants:
                raise Skip(f"the {variant} variant computes Jacobians of vector outputs; this case returns a scalar "
                           "(its gradient is measured by the other variants)")
            if variant != "eager":
                _check_trace_cost(case, variant, dtype, device)
            if variant == "forward":
                return self._forward(case, f, args, names, dtype, sync)

            def step() -> tuple[Any, list[Any]]:
                with tf.GradientTape() as tape:
                    for a in args:
                        if not isinstance(a, tf.Variable):
                            tape.watch(a)
                    y = f(args)
                return y, _dense(tape.gradient(y, args))

            def evaluate() -> Any:
                return f(args)

            compiled_step: Callable[[], Any] = step
            compiled_f: Callable[[], Any] = evaluate
            if variant in ("function", "xla"):
                compiled_step = tf.function(step, jit_compile=(variant == "xla"))
                compiled_f = tf.function(evaluate, jit_compile=(variant == "xla"))
            start = time.perf_counter()
            nested_calls = nested.TAPE_CALLS[0]
            try:
                with _graph_branch_skip(variant, step if variant != "eager" else None, case):
                    y, grads = compiled_step()
            except tf.errors.InvalidArgumentError as exc:
                if variant == "xla" and "unsupported operations" in str(exc):
                    ops = sorted(set(re.findall(r"(\w+) \(No registered", str(exc)))) or ["an operation"]
                    raise Skip(f"XLA cannot compile {', '.join(ops)} on this device; the function and eager "
                               "variants run it") from None
                raise
            sync()
            prepare_s = time.perf_counter() - start
            if variant == "eager":
                case.__dict__.setdefault("_tape_eager_s", {})[(dtype, device)] = prepare_s
                if nested_calls != nested.TAPE_CALLS[0]:
                    case.__dict__["_tape_nested"] = True
            compiled_f()
            check_scalar(case, y, "TensorFlow namespace" if case.native is None else "native TensorFlow code")
            info: dict[str, Any] = {}
            if np.dtype(y.dtype.as_numpy_dtype) != np.dtype(dtype):
                info["note"] = (f"the function returned {y.dtype.name} in a {dtype} run (a constant of another "
                                "dtype promoted it; create constants with xp.asarray)")
            traces = compiled_step.experimental_get_tracing_count() if variant != "eager" else 0

            first = [grads]  # the first call's gradient, taken while preparing: not computed a second time

            def gradient() -> dict[str, np.ndarray]:
                result = first.pop() if first else compiled_step()[1]
                missing = [n for n, g in zip(names, result) if g is None]
                values = {n: (None if g is None else np.asarray(g.numpy())) for n, g in zip(names, result)}
                if missing:
                    raise NoGradient(_none_message(case, missing), missing, values)
                return {n: v.reshape(case.inputs[n].shape) for n, v in values.items()}  # type: ignore[union-attr]

            return _reverse_prepared(compiled_step, compiled_f, variant, gradient, prepare_s, info, traces, sync)

    def _forward(self, case: Case, f: Callable[[list[Any]], Any], args: list[Any], names: list[str], dtype: str,
                 sync: Callable[[], None]) -> Prepared:
        tf = _tf()
        if case.size > MAX_FORWARD_INPUTS:
            raise Skip(f"forward mode pushes one tangent per input element ({case.size}) through the function at "
                       f"once; over the budget of {MAX_FORWARD_INPUTS} (diffbench.engines.tape.MAX_FORWARD_INPUTS)")
        value = f(args)
        check_scalar(case, value, "TensorFlow namespace" if case.native is None else "native TensorFlow code")
        start = time.perf_counter()  # preparing is tracing: the connection probe and the batched pass
        floats = [k for k, name in enumerate(names) if name not in case.integer_inputs]
        primals = [args[k] for k in floats]
        # one accumulator over every input cannot tell which one is unconnected: a probe can (and with one
        # input, the pass itself does)
        unconnected = _forward_unconnected(f, args, floats) if len(floats) > 1 else set()

        def jvp(tangent: Any) -> Any:
            with tf.autodiff.ForwardAccumulator(primals=primals, tangents=_split(tangent, primals)) as acc:
                y = f(args)
            out = acc.jvp(y)
            if out is None:
                unconnected.update(floats)
                return tf.zeros([], y.dtype)
            return tf.reshape(out, [])

        with _graph_branch_skip("forward", lambda: f(args), case):
            if primals:
                jvps, how, unvectorised = _over_basis(jvp, primals, dtype, tf.TensorSpec([], value.dtype))
            else:  # nothing to push tangents through: time the function itself, which is what the pass would cost
                jvps, how, unvectorised = tf.function(lambda: tf.reshape(f(args), [-1])[:0]), "unrolled", None
            missing = [name for k, name in enumerate(names) if k not in floats or k in unconnected]
            first = jvps()
        sync()
        prepare_s = time.perf_counter() - start
        traces = jvps.experimental_get_tracing_count()
        info: dict[str, Any] = {"evaluation": how}
        if unvectorised is not None:
            tangents = sum(int(np.prod(p.shape, dtype=int)) for p in primals)
            info["note"] = (f"forward mode pushed the {tangents} tangents one at a time (tf.map_fn): TensorFlow "
                            f"cannot vectorise the function ({unvectorised})")

        def gradient() -> dict[str, np.ndarray]:
            flat = np.asarray(first.numpy())
            partial: dict[str, np.ndarray | None] = {name: None for name in names}
            start = 0
            for k in floats:
                size = int(np.prod(args[k].shape, dtype=int))
                if names[k] not in missing:
                    partial[names[k]] = flat[start:start + size].reshape(case.inputs[names[k]].shape)
                start += size
            if missing:
                raise NoGradient(_none_message(case, missing), missing, partial)
            return partial  # type: ignore[return-value]

        return _forward_prepared(jvps, f, args, gradient, prepare_s, info, traces, sync)

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        """The (N, N) Hessian, the Jacobian of the reverse-mode gradient taken by a vectorised reverse pass
        (``tape.jacobian`` with pfor), traced once for any ``variant``; row i is the derivative of gradient
        component i. Raises Skip past ``MAX_HESSIAN_INPUTS`` inputs, OverBudget where its tracing is predicted
        past ``MAX_TRACE_S``, NoGradient where the first derivative is ``None`` or does not depend on an input."""
        tf = _tf()
        if output_shape(case):
            raise Skip(f"Hessian of a vector output (shape {output_shape(case)}) is not formed: second-order rows "
                       "are for scalar cases")
        if case.size > MAX_HESSIAN_INPUTS:
            raise Skip(f"{case.size} inputs exceed the tape Hessian budget of {MAX_HESSIAN_INPUTS} "
                       "(diffbench.engines.tape.MAX_HESSIAN_INPUTS): its vectorised pass holds one gradient per "
                       "input at once")
        _check_trace_cost(case, "hessian", dtype, "CPU")
        args = _inputs(case, dtype)
        f = _function_of(case, dtype)
        names = list(case.inputs)
        n = case.size
        check_scalar(case, f(args), "TensorFlow namespace" if case.native is None else "native TensorFlow code")
        # which inputs have no (first or second) derivative is known while tracing; raised after it
        unconnected: dict[str, list[str]] = {}

        def build(use_pfor: bool) -> Any:
            def second_derivatives() -> Any:
                unconnected.clear()
                with tf.GradientTape(persistent=True) as outer:
                    for a in args:
                        if not isinstance(a, tf.Variable):
                            outer.watch(a)
                    grads = _gradients(f, args)
                    unconnected["first"] = [name for name, g in zip(names, grads) if g is None]
                    if unconnected["first"]:
                        return tf.zeros([n, n], tf.as_dtype(dtype))
                    flat = tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)
                blocks = outer.jacobian(flat, args, experimental_use_pfor=use_pfor)
                unconnected["second"] = [name for name, b in zip(names, blocks) if b is None]
                if unconnected["second"]:
                    return tf.zeros([n, n], flat.dtype)
                return tf.concat([tf.reshape(b, [n, -1]) for b in blocks], axis=1)

            return tf.function(second_derivatives)

        try:
            with _graph_branch_skip("Hessian"):
                second = build(True)
                second.get_concrete_function()
        except (ValueError, NotImplementedError, TypeError):  # pfor cannot vectorise an op: one row at a time
            # where this tracing fails too and the eager gradient runs, autograph refused valid Python: a skip
            with _graph_branch_skip("Hessian", lambda: _gradients(f, args), case):
                second = build(False)
                second.get_concrete_function()
        if unconnected.get("first"):
            raise NoGradient(_none_message(case, unconnected["first"]), unconnected["first"], {})
        if unconnected.get("second"):
            missing = unconnected["second"]
            raise NoGradient(_second_none_message(case, missing), missing, {})
        return np.asarray(second().numpy())


# --------------------------------------------------------------------------- Jacobians of vector outputs
def _where(case: Case) -> str:
    return "TensorFlow namespace" if case.native is None else "native TensorFlow code"


def _integer_check(case: Case, names: list[str], values: dict[str, Any]) -> None:
    """Raise NoGradient for integer inputs (the tape does not watch them: no Jacobian block exists)."""
    integer = [n for n in names if n in case.integer_inputs]
    if integer:
        raise NoGradient(_none_message(case, integer), integer, values)


def _first_call(call: Callable[[], Any], variant: str) -> Any:
    """The first call of a compiled Jacobian step; XLA's unsupported operations become Skip."""
    tf = _tf()
    try:
        return call()
    except tf.errors.InvalidArgumentError as exc:
        if variant == "xla" and "unsupported operations" in str(exc):
            ops = sorted(set(re.findall(r"(\w+) \(No registered", str(exc)))) or ["an operation"]
            raise Skip(f"XLA cannot compile {', '.join(ops)} on this device; the function and eager "
                       "variants run it") from None
        raise


#: what a case tagged ``batch`` without the batch axis ``tape.batch_jacobian`` needs should change
_BATCH_FIX = (f"tape.batch_jacobian needs the examples along axis 0 of the first input and of the output (output "
              f"row b depending only on input row b); put them there, or remove the tag {BATCH_TAG!r}")


def _batch_layout(case: Case, args: list[Any], names: list[str], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(B, output entries per example, first-input entries per example) for the ``batch`` variant; Skip with
    the reason where the case does not declare or does not have the batch axis ``batch_jacobian`` needs."""
    if BATCH_TAG not in case.tags:
        raise Skip(f"tape.batch_jacobian needs a batch axis, and this case does not declare one (tag a case "
                   f"{BATCH_TAG!r} when axis 0 of its first input and of its output is a batch axis: output row b "
                   "depends only on input row b)")
    first = names[0]
    in_shape = tuple(int(d) for d in args[0].shape)
    if first in case.integer_inputs or not in_shape:
        raise Skip(f"case {case.name!r} is tagged {BATCH_TAG!r}, but its first input {first!r} is not a float array "
                   f"with a batch axis 0: {_BATCH_FIX}")
    if in_shape[0] != shape[0]:
        raise Skip(f"case {case.name!r} is tagged {BATCH_TAG!r}, but axis 0 of its output ({shape[0]}) and of its "
                   f"first input {first!r} ({in_shape[0]}) differ in length: {_BATCH_FIX}")
    b = in_shape[0]
    return b, int(np.prod(shape[1:], dtype=int)), int(np.prod(in_shape[1:], dtype=int))


def _reverse_jacobian(case: Case, f: Callable[[list[Any]], Any], args: list[Any], names: list[str], dtype: str,
                      variant: str, sync: Callable[[], None]) -> Prepared:
    """The Jacobian of a vector case by reverse mode: ``tape.jacobian`` with pfor (``eager``, ``function``,
    ``xla``), without it (``loop``), or ``tape.batch_jacobian`` for the first input (``batch``)."""
    tf = _tf()
    shape = output_shape(case)
    floats = [k for k, name in enumerate(names) if name not in case.integer_inputs]
    sources = [args[k] for k in floats]
    # what TensorFlow returned None for, decided while tracing (or by each eager call)
    none_inputs: list[str] = []
    layout = _batch_layout(case, args, names, shape) if variant == "batch" else None

    def blocks_of(tape: Any, y: Any, wrt: list[int], use_pfor: bool) -> list[Any]:
        found = tape.jacobian(y, [args[k] for k in wrt], experimental_use_pfor=use_pfor)
        none_inputs.extend(names[k] for k, block in zip(wrt, found) if block is None)
        # the zero block unconnected_gradients=ZERO gives, the None recorded above
        return [tf.zeros(tuple(y.shape) + tuple(args[k].shape), y.dtype) if block is None else block
                for k, block in zip(wrt, found)]

    def build(use_pfor: bool) -> Callable[[], Any]:
        def step() -> tuple[Any, list[Any]]:
            none_inputs.clear()
            with tf.GradientTape(persistent=not use_pfor or variant == "batch") as tape:
                for a in args:
                    if not isinstance(a, tf.Variable):
                        tape.watch(a)
                if variant == "batch":
                    b, per_out, per_in = layout  # type: ignore[misc]
                    # batch_jacobian wants rank-2 source and target: the first input is read through a (B, n/B)
                    # view that the tape records, and the output reshaped to (B, m/B)
                    view = tf.reshape(args[0], [b, per_in])
                    y = f([tf.reshape(view, args[0].shape), *args[1:]])
                    target = tf.reshape(y, [b, per_out])
                else:
                    y = f(args)
            if variant != "batch":
                return y, blocks_of(tape, y, floats, use_pfor)
            block = tape.batch_jacobian(target, view)
            if block is None:
                none_inputs.append(names[0])
                block = tf.zeros([b, per_out, per_in], y.dtype)
            return y, [block, *blocks_of(tape, y, floats[1:], True)]

        if variant == "eager":
            return step
        return tf.function(step, jit_compile=(variant == "xla"))

    info: dict[str, Any] = {}
    compiled_step = build(variant != "loop")
    start = time.perf_counter()
    try:
        y, first_blocks = _first_call(compiled_step, variant)
        info["evaluation"] = "loop" if variant == "loop" else "vectorized"
    except (ValueError, NotImplementedError, TypeError) as exc:
        if variant in ("loop", "batch"):
            raise
        # pfor could not convert an operation: the while-loop path, saying so
        compiled_step = build(False)
        y, first_blocks = _first_call(compiled_step, variant)
        info["evaluation"] = "loop"
        info["note"] = (f"tape.jacobian took the while-loop path (one reverse pass per output component): pfor "
                        f"cannot vectorise the function ({_cause(exc)})")
    sync()
    prepare_s = time.perf_counter() - start
    check_output(case, y, _where(case))
    if np.dtype(y.dtype.as_numpy_dtype) != np.dtype(dtype):
        promoted = (f"the function returned {y.dtype.name} in a {dtype} run (a constant of another dtype promoted "
                    "it; create constants with xp.asarray)")
        info["note"] = f"{info['note']}; {promoted}" if "note" in info else promoted
    if none_inputs:
        info["unconnected"] = list(dict.fromkeys(none_inputs))
    compiled_f: Callable[[], Any] = lambda: f(args)  # noqa: E731
    if variant != "eager":
        compiled_f = tf.function(compiled_f, jit_compile=(variant == "xla"))
    compiled_f()
    traces = compiled_step.experimental_get_tracing_count() if variant != "eager" else 0

    def gradient() -> dict[str, np.ndarray]:
        _, blocks = compiled_step()
        values: dict[str, np.ndarray] = {}
        for k, block in zip(floats, blocks):
            array = np.asarray(block.numpy())
            if variant == "batch" and k == 0:
                b, per_out, per_in = layout  # type: ignore[misc]
                full = np.zeros((b, per_out, b, per_in), dtype=array.dtype)
                rows = np.arange(b)
                full[rows, :, rows, :] = array  # block b on the diagonal, zeros off it
                array = full
            values[names[k]] = array.reshape(shape + case.inputs[names[k]].shape)
        _integer_check(case, names, values)
        return values

    return _reverse_prepared(compiled_step, compiled_f, variant, gradient, prepare_s, info, traces, sync,
                             f_key="function" if variant in ("loop", "batch") else None)


def _forward_jacobian(case: Case, f: Callable[[list[Any]], Any], args: list[Any], names: list[str], dtype: str,
                      sync: Callable[[], None]) -> Prepared:
    """The Jacobian of a vector case by forward mode: one ``ForwardAccumulator`` pass per basis tangent of the
    flattened float inputs, all N pushed through together (``_over_basis``), each giving a column."""
    tf = _tf()
    if case.size > MAX_FORWARD_INPUTS:
        raise Skip(f"forward mode pushes one tangent per input element ({case.size}) through the function at "
                   f"once; over the budget of {MAX_FORWARD_INPUTS} (diffbench.engines.tape.MAX_FORWARD_INPUTS)")
    shape = output_shape(case)
    m = int(np.prod(shape, dtype=int))
    value = f(args)
    check_output(case, value, _where(case))
    start = time.perf_counter()
    floats = [k for k, name in enumerate(names) if name not in case.integer_inputs]
    primals = [args[k] for k in floats]
    unconnected = _forward_unconnected(f, args, floats) if len(floats) > 1 else set()

    def jvp(tangent: Any) -> Any:
        with tf.autodiff.ForwardAccumulator(primals=primals, tangents=_split(tangent, primals)) as acc:
            y = f(args)
        out = acc.jvp(y)
        if out is None:
            unconnected.update(floats)
            return tf.zeros([m], y.dtype)
        return tf.reshape(out, [m])

    if primals:
        jvps, how, unvectorised = _over_basis(jvp, primals, dtype, tf.TensorSpec([m], value.dtype))
    else:
        jvps, how, unvectorised = tf.function(lambda: tf.reshape(f(args), [-1])[:0]), "unrolled", None
    first = jvps()
    sync()
    prepare_s = time.perf_counter() - start
    traces = jvps.experimental_get_tracing_count()
    info: dict[str, Any] = {"evaluation": how}
    none_inputs = [names[k] for k in floats if k in unconnected]
    if none_inputs:
        info["unconnected"] = none_inputs
    if unvectorised is not None:
        info["note"] = (f"forward mode pushed the {sum(int(np.prod(p.shape, dtype=int)) for p in primals)} "
                        f"tangents one at a time (tf.map_fn): TensorFlow cannot vectorise the function "
                        f"({unvectorised})")

    def gradient() -> dict[str, np.ndarray]:
        columns = np.asarray(first.numpy()).reshape(-1, m).T  # (m, N): tangent j gave column j
        values: dict[str, np.ndarray] = {}
        offset = 0
        for k in floats:
            size = int(np.prod(args[k].shape, dtype=int))
            block = columns[:, offset:offset + size]
            if k in unconnected:  # TensorFlow's None: the zero block, recorded in none_inputs
                block = np.zeros_like(block)
            values[names[k]] = block.reshape(shape + case.inputs[names[k]].shape)
            offset += size
        _integer_check(case, names, values)
        return values

    return _forward_prepared(jvps, f, args, gradient, prepare_s, info, traces, sync)


def _forward_prepared(jvps: Any, f: Callable[[list[Any]], Any], args: list[Any], gradient: Callable[[], Any],
                      prepare_s: float, info: dict[str, Any], traces: int, sync: Callable[[], None]) -> Prepared:
    """The forward-mode Prepared (gradient or Jacobian): ``jvps`` timed, f evaluated by the same traced function
    as the ``function`` variant's (so it is timed once for both), a retrace while timing reported."""
    tf = _tf()

    def timed() -> Any:
        out = jvps()
        sync()
        return out

    evaluate = tf.function(lambda: f(args))
    evaluate()

    def f_timed() -> Any:
        out = evaluate()
        sync()
        return out

    def check_stable() -> str | None:
        if jvps.experimental_get_tracing_count() != traces:
            return "tf.function retraced while being timed; the time includes tracing"
        return None

    return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=prepare_s, info=info,
                    check_stable=check_stable, f_key="function")


def _reverse_prepared(compiled_step: Any, compiled_f: Callable[[], Any], variant: str, gradient: Callable[[], Any],
                      prepare_s: float, info: dict[str, Any], traces: int, sync: Callable[[], None],
                      f_key: str | None = None) -> Prepared:
    """The reverse-mode Prepared (gradient or Jacobian): ``compiled_step`` timed, ``compiled_f`` for the function
    alone, a retrace of a traced variant while timing reported."""

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
                    check_stable=check_stable, f_key=f_key)
