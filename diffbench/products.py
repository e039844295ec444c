"""Jacobian-vector and vector-Jacobian products, without forming the Jacobian.

For a case ``f: R^N -> R^m`` at its point ``x`` (``m`` the number of output components, 1 for a
scalar case; inputs flattened and concatenated in parameter order):

- the **JVP** ``J·v`` has ``m`` entries (the derivative of ``f`` along ``v``): its
  ``Prepared.gradient()`` returns ``{"jvp": array shaped like the output}``;
- the **VJP** ``uᵀ·J`` has ``N`` entries (the gradient of the scalar ``uᵀf``): its
  ``Prepared.gradient()`` returns name -> array shaped like that input, as a gradient.

Directions (:func:`directions`): ``v ∈ R^N`` and ``u ∈ R^m`` are independent standard Gaussian
vectors drawn by ``numpy.random.default_rng((PRODUCT_SEED, crc32(case name)))`` (v first),
normalised to unit length and rounded to the run's dtype. They depend on the case's name only,
so every method, variant, dtype and run uses the same ones; a scalar case has ``u = [1]``.

Per method (variants ``jvp`` and ``vjp`` of each engine, declared in its
``EngineInfo.jacobian_variants``):

- ``tape``: ``tf.autodiff.ForwardAccumulator`` with the tangent ``v`` (JVP); ``tape.gradient`` with
  ``output_gradients=u`` (VJP). A ``None`` (the output not connected to any input) raises
  :class:`~diffbench.engines.NoGradient`, as the tape's gradient rows do.
- ``finite``: the JVP is the Richardson-extrapolated central difference of ``t -> f(x + t·v)`` at 0
  (:func:`directional_derivative`, with its per-entry error estimate); the VJP is the Richardson
  gradient of the scalar ``uᵀf``, one directional derivative per input along its basis vector, up to
  ``FINITE_VJP_INPUTS`` inputs (past it the row is ``skipped``: N·10 evaluations of f is the full
  Jacobian's cost that products exist to avoid).
- ``jax``: ``jax.jvp`` / ``jax.vjp``; ``torch``: ``torch.func.jvp`` / ``torch.func.vjp`` (where installed).

The consistency check JAX's and torch's fast gradchecks use, ``uᵀ(Jv) = (uᵀJ)v``, is computed on the
``vjp`` row with the same method's JVP: ``product_gap = |uᵀ(Jv) − (uᵀJ)v| / max(‖Jv‖, ‖uᵀJ‖)``. Both
denominators bound ``|uᵀJv|`` (u and v are unit vectors), so the gap is relative to the size the products
could have, not to a ``uᵀJv`` that happens to cancel. An exact method shows rounding (a few eps: 0 for the
tape on softmax in float64, 2.6e-8 in float32); a wrong reverse (or forward) rule shows the size of its
error (TensorFlow's forward mode differentiates the primal computation, so a wrong ``tf.custom_gradient``
shows here).

Large gradients (``check_directions``, used by ``assert_gradients`` past its size, and by ``run`` for
gradient and VJP rows past the certified reference's input budget) are checked along random-sign
directions against Richardson derivatives; the false-alarm bound and what is caught are derived in its
docstring.

The truths (:func:`reference_vjp`, :func:`reference_jvp`) are certified references of scalar cases
built from the case, so they are judged exactly as gradients are:

- VJP: the certified gradient of the scalar case ``uᵀf`` (:func:`vjp_case`).
- JVP: entry ``k`` is the certified derivative at ``t = 0`` of the one-input scalar case
  ``t -> f_k(x + t·v)`` (:func:`jvp_case`), up to ``MAX_REFERENCE_OUTPUTS`` entries (each is one
  reference computation of the whole function); past it, or past the reference's input budget, the
  harness judges against Richardson directional derivatives instead and says so.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .case import Case
from .results import PRODUCT_VARIANTS  # noqa: F401 - the engines and their callers import it from here
from .engines import NoGradient, Prepared, Skip, check_output, flatten, output_shape, output_size, split, unflatten

#: first element of the directions' seed (the second is the CRC-32 of the case's name)
PRODUCT_SEED = 22
#: the finite VJP differentiates uᵀf along each input: past this many inputs it is ``skipped``
FINITE_VJP_INPUTS = 2000
#: the JVP's certified reference takes one reference computation per output entry: past this many
#: entries the JVP is judged against Richardson directional derivatives
MAX_REFERENCE_OUTPUTS = 64
#: Richardson's first step moves no input by more than this fraction of its scale max(|xᵢ|, 1). Smaller than the
#: finite engine's per-element 2⁻²: along a direction every input moves at once, and a sum of many terms leaves
#: the h² regime sooner (Σ tanh(xᵢwᵢ)² along random signs over 2·10⁶ inputs: D(h) − f' is 4.5 at h = 2⁻²,
#: −0.09 at 2⁻⁴, −0.007 at 2⁻⁶, shrinking by 4 only from 2⁻⁴ on)
RICHARDSON_START = 2.0**-4
#: central differences at h, h/2, ..., h/2^(LEVELS-1): 2·LEVELS evaluations of f per start
RICHARDSON_LEVELS = 5
#: a start whose first three differences do not shrink like h² (ratio outside [2, 8]), or that reaches a
#: non-finite value, is divided by SHRINK, up to MAX_SHRINKS times
SHRINK = 16.0
MAX_SHRINKS = 6


# --------------------------------------------------------------------------- directions

def _checked(case: Case, out: Any, where: str) -> Any:
    """``out``, after :func:`diffbench.engines.check_output`: a case whose output's shape differs in ``where``
    from NumPy's is named with the fix, not met as a framework's reshape error."""
    check_output(case, out, where)
    return out

def _unit_gaussian(rng: np.random.Generator, size: int) -> np.ndarray:
    vector = rng.standard_normal(size)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def directions(case: Case, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """(u, v): the case's output direction (m entries) and input direction (N entries), float64 arrays
    holding values of ``dtype``: unit Gaussian vectors seeded by ``PRODUCT_SEED`` and the case's name
    (module docstring). A scalar case's u is ``[1.0]``."""
    rng = np.random.default_rng((PRODUCT_SEED, zlib.crc32(case.name.encode("utf-8"))))
    v = _unit_gaussian(rng, case.size)
    m = output_size(case)
    u = _unit_gaussian(rng, m) if output_shape(case) else np.ones(1)
    return u.astype(dtype).astype(np.float64), v.astype(dtype).astype(np.float64)


def product_gap(u: np.ndarray, jvp: np.ndarray, vjp: np.ndarray, v: np.ndarray) -> float:
    """``|uᵀ(Jv) − (uᵀJ)v| / max(‖Jv‖, ‖uᵀJ‖)`` (0 where both products are 0; NaN where either is not
    finite)."""
    jvp, vjp = np.ravel(np.asarray(jvp, np.float64)), np.ravel(np.asarray(vjp, np.float64))
    if not (np.all(np.isfinite(jvp)) and np.all(np.isfinite(vjp))):
        return math.nan
    left, right = float(np.dot(u, jvp)), float(np.dot(vjp, v))
    size = max(float(np.linalg.norm(jvp)), float(np.linalg.norm(vjp)))
    return abs(left - right) / size if size > 0 else abs(left - right)


# --------------------------------------------------------------------------- Richardson along a direction
@dataclass
class Directional:
    """A Richardson directional derivative: ``value`` and its absolute ``error`` estimate per output entry,
    the ``step`` (t) of the level it came from, and ``notes`` for a diagnosis."""

    value: np.ndarray
    error: np.ndarray
    step: float
    notes: list[str] = field(default_factory=list)
    evaluations: int = 0


def first_step(x: np.ndarray, w: np.ndarray) -> float:
    """The largest t at which ``x + t·w`` moves no input by more than ``RICHARDSON_START`` of its scale
    max(|xᵢ|, 1) (the finite engine's per-element start, applied to every element at once)."""
    reach = np.abs(w) / np.maximum(np.abs(x), 1.0)
    top = float(np.max(reach)) if reach.size else 0.0
    return RICHARDSON_START / top if top > 0 else RICHARDSON_START


def directional_derivative(phi: Callable[[float], np.ndarray], h0: float, eps: float, enough: float = 0.0
                           ) -> Directional:
    """The derivative at 0 of ``phi(t)`` (a float64 array of m entries) by Richardson extrapolation of
    central differences at h0, h0/2, ..., with a per-entry error estimate.

    D(h) = (φ(h) − φ(−h)) / 2h = φ'(0) + a₁h² + a₂h⁴ + …; the table
    T[k][j] = T[k][j−1] + (T[k][j−1] − T[k−1][j−1]) / (4^j − 1) removes one power per column. Each entry's
    estimate is its distance from the two entries it was built from plus its rounding (eps·(|φ(h)|+|φ(−h)|)/2h
    carried through the same recurrence); per output entry the smallest estimate is kept. A start whose
    differences do not shrink like a smooth function's ((D(h)−D(h/2))/(D(h/2)−D(h/4)) outside [2, 80] where
    the differences exceed rounding: 4 in the h² regime, 16 where the h² term happens to vanish, 64 for h⁶;
    a sum of many terms along a random direction can be in any of them), or which reaches a NaN/inf, is
    divided by ``SHRINK`` (up to ``MAX_SHRINKS`` times; then the estimate is inf). With ``enough`` > 0, levels
    stop being added once every entry's estimate is at most ``enough`` times its value (a check that needs
    no more accuracy than that saves the evaluations). Raises what ``phi`` raises.
    """
    notes: list[str] = []
    evaluations, slow = 0, False
    h = h0
    for attempt in range(MAX_SHRINKS + 1):
        diffs, rounding, finite = [], [], True
        for k in range(RICHARDSON_LEVELS):
            hk = h / 2.0**k
            plus, minus = np.ravel(np.asarray(phi(hk), np.float64)), np.ravel(np.asarray(phi(-hk), np.float64))
            evaluations += 2
            if not (np.all(np.isfinite(plus)) and np.all(np.isfinite(minus))):
                finite = False
                break
            diffs.append((plus - minus) / (2 * hk))
            rounding.append(eps * (np.abs(plus) + np.abs(minus)) / (2 * hk))
            if enough > 0 and k >= 2 and k < RICHARDSON_LEVELS - 1 and _smooth(diffs, rounding):
                found = _table(diffs, rounding, h, notes, evaluations)
                if np.all(found.error <= enough * np.abs(found.value)):
                    return found
        last = attempt == MAX_SHRINKS
        if not finite:
            if not last:
                if attempt == 0:
                    notes.append("f is not finite at a point of the first step (the direction leaves the "
                                 "function's domain); the step was reduced")
                h /= SHRINK
                continue
            return Directional(np.full(np.shape(diffs[0]) if diffs else 1, np.nan),
                               np.full(np.shape(diffs[0]) if diffs else 1, np.inf), h, notes + [
                                   "f is not finite on both sides of x at every step tried"], evaluations)
        if not _smooth(diffs, rounding) and not last:
            if not slow:
                slow = True
                notes.append("the differences did not converge at the first step (the function varies faster "
                             "than the step along this direction); the step was reduced")
            h /= SHRINK
            continue
        return _table(diffs, rounding, h, notes, evaluations)
    raise AssertionError("unreachable")  # the loop returns on its last attempt


def _smooth(diffs: list[np.ndarray], rounding: list[np.ndarray]) -> bool:
    """Whether the first three differences shrink as a smooth function's do (ratio in [2, 80] wherever the
    differences exceed rounding)."""
    first, second = diffs[0] - diffs[1], diffs[1] - diffs[2]
    noise = 4 * (rounding[0] + 2 * rounding[1] + rounding[2])
    seen = (np.abs(first) > noise) & (np.abs(second) > noise)
    with np.errstate(all="ignore"):
        ratio = first / np.where(second == 0, np.inf, second)
    return not bool(np.any(seen & ~((ratio >= 2) & (ratio <= 80))))


def _table(diffs: list[np.ndarray], rounding: list[np.ndarray], h: float, notes: list[str],
           evaluations: int) -> Directional:
    table, carried = [[diffs[0]]], [[rounding[0]]]
    best = np.abs(diffs[0] - diffs[1]) + rounding[0]  # level 0 on its own: its distance from the next
    value, error, step = diffs[0].copy(), best.copy(), np.full(diffs[0].shape, h)
    for k in range(1, len(diffs)):
        row, row_r = [diffs[k]], [rounding[k]]
        for j in range(1, k + 1):
            factor = 4.0**j - 1
            row.append(row[j - 1] + (row[j - 1] - table[k - 1][j - 1]) / factor)
            row_r.append(row_r[j - 1] + (row_r[j - 1] + carried[k - 1][j - 1]) / factor)
            estimate = np.abs(row[j] - row[j - 1]) + np.abs(row[j] - table[k - 1][j - 1]) + row_r[j]
            better = estimate < error
            value, error = np.where(better, row[j], value), np.where(better, estimate, error)
            step = np.where(better, h / 2.0**k, step)
        table.append(row)
        carried.append(row_r)
    return Directional(value, error, float(np.max(step)) if step.size else h, notes, evaluations)


# --------------------------------------------------------------------------- the case as a NumPy function
def numpy_function(case: Case, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    """The case as a function of one flat vector (cast to ``dtype``) returning its flat output in float64."""
    from .namespaces import numpy_namespace

    xp = numpy_namespace(dtype)
    shapes = [v.shape for v in case.inputs.values()]

    def f(flat: np.ndarray) -> np.ndarray:
        args = [part.astype(dtype).copy() for part in split(np.asarray(flat), shapes)]
        with np.errstate(all="ignore"):
            return np.ravel(np.asarray(_checked(case, case.func(*args, xp=xp), "NumPy namespace"), dtype=np.float64))

    return f


def finite_jvp(case: Case, dtype: str, v: np.ndarray) -> Directional:
    """The Richardson directional derivative of the case along ``v`` in ``dtype`` (see module docstring)."""
    f = numpy_function(case, dtype)
    x = flatten(case.inputs, list(case.inputs))
    return directional_derivative(lambda t: f(x + t * v), first_step(x, v), float(np.finfo(dtype).eps))


def finite_vjp(case: Case, dtype: str, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The Richardson gradient of ``uᵀf``: (value, error estimate, notes), one directional derivative per
    input along its basis vector. Raises Skip past ``FINITE_VJP_INPUTS`` inputs."""
    n = case.size
    if n > FINITE_VJP_INPUTS:
        raise Skip(f"the finite VJP differences uᵀf along each of the {n} inputs, over its budget of "
                   f"{FINITE_VJP_INPUTS} (diffbench.products.FINITE_VJP_INPUTS); the finite JVP row checks this "
                   "case")
    f = numpy_function(case, dtype)
    x = flatten(case.inputs, list(case.inputs))
    eps = float(np.finfo(dtype).eps)
    value, error, notes = np.zeros(n), np.zeros(n), []
    for i in range(n):
        basis = np.zeros(n)
        basis[i] = 1.0
        found = directional_derivative(lambda t, b=basis: np.atleast_1d(np.dot(u, f(x + t * b))),
                                       first_step(x, basis), eps)
        value[i], error[i] = float(found.value[0]), float(found.error[0])
        notes += [n for n in found.notes if n not in notes]
    return value, error, notes


# --------------------------------------------------------------------------- per-method products
def _float_inputs(case: Case, method: str) -> None:
    if case.integer_inputs:
        raise Skip(f"{method} products take float inputs only; the case has integer input(s) "
                   f"{', '.join(sorted(case.integer_inputs))}")


def _tape(case: Case, dtype: str, device: str, u: np.ndarray, v: np.ndarray
          ) -> tuple[Callable[[], np.ndarray], Callable[[], np.ndarray], Callable[[], Any]]:
    from .namespaces import tensorflow_namespace
    from .quiet import import_tensorflow

    tf = import_tensorflow()
    _float_inputs(case, "tape")
    where = "/CPU:0" if device == "CPU" else None
    if where is None:
        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            raise Skip(f"TensorFlow sees no device {device!r} here")
        where = gpus[0].name
    names = list(case.inputs)
    shapes = [case.inputs[k].shape for k in names]
    if case.native is not None:
        native = case.native
        func: Callable[[list[Any]], Any] = lambda args: _checked(case, native(*args), "native TensorFlow code")  # noqa: E731
    else:
        xp = tensorflow_namespace(dtype)
        func = lambda args: _checked(case, case.func(*args, xp=xp), "TensorFlow namespace")  # noqa: E731
    with tf.device(where):
        args = [tf.constant(case.inputs[k], dtype=dtype) for k in names]
        tangents = [tf.constant(piece, dtype=dtype) for piece in split(v, shapes)]
        cotangent = tf.constant(u, dtype=dtype)

    def jvp() -> np.ndarray:
        with tf.device(where):
            with tf.autodiff.ForwardAccumulator(primals=args, tangents=tangents) as acc:
                y = func(args)
            out = acc.jvp(y)
        if out is None:
            raise NoGradient(f"TensorFlow returned None for the JVP: the output is not connected to "
                             f"{', '.join(names)} on the tape", names, {})
        return np.ravel(np.asarray(out.numpy(), np.float64))

    def vjp() -> np.ndarray:
        with tf.device(where):
            with tf.GradientTape() as tape:
                tape.watch(args)
                y = func(args)
            grads = tape.gradient(y, args, output_gradients=tf.reshape(cotangent, tf.shape(y)))
        missing = [k for k, g in zip(names, grads) if g is None]
        if missing:
            raise NoGradient(f"TensorFlow returned None for the VJP with respect to {', '.join(missing)}: the "
                             "output is not connected to it on the tape", missing, {})
        return np.concatenate([np.ravel(np.asarray(g.numpy(), np.float64)) for g in grads])

    return jvp, vjp, lambda: func(args).numpy()


def _jax(case: Case, dtype: str, device: str, u: np.ndarray, v: np.ndarray
         ) -> tuple[Callable[[], np.ndarray], Callable[[], np.ndarray], Callable[[], Any]]:
    import jax  # ImportError: the engine is not installed, reported as such by the harness
    import jax.numpy as jnp

    from .namespaces import array_api_namespace

    jax.config.update("jax_enable_x64", True)
    _float_inputs(case, "jax")
    if device != "CPU":
        raise Skip("JAX products are measured on the CPU")
    xp = array_api_namespace(jnp, "JAX (jax.numpy)", getattr(jnp, dtype))
    shapes = [a.shape for a in case.inputs.values()]
    args = [jnp.asarray(a, dtype=getattr(jnp, dtype)) for a in case.inputs.values()]
    tangents = [jnp.asarray(p, dtype=getattr(jnp, dtype)) for p in split(v, shapes)]
    cotangent = jnp.asarray(u, dtype=getattr(jnp, dtype))

    def f(*a: Any) -> Any:
        return jnp.reshape(_checked(case, case.func(*a, xp=xp), "JAX namespace"), (-1,))

    def jvp() -> np.ndarray:
        return np.asarray(jax.block_until_ready(jax.jvp(f, tuple(args), tuple(tangents))[1]), np.float64)

    def vjp() -> np.ndarray:
        _, pull = jax.vjp(f, *args)
        return np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in jax.block_until_ready(pull(cotangent))])

    return jvp, vjp, lambda: jax.block_until_ready(f(*args))


def _torch(case: Case, dtype: str, device: str, u: np.ndarray, v: np.ndarray
           ) -> tuple[Callable[[], np.ndarray], Callable[[], np.ndarray], Callable[[], Any]]:
    import array_api_compat.torch as xtorch  # ImportError: the engine is not installed
    import torch
    import torch.func

    from .namespaces import array_api_namespace

    _float_inputs(case, "torch")
    if device != "CPU":
        raise Skip("torch products are measured on the CPU")
    torch_dtype = getattr(torch, dtype)
    xp = array_api_namespace(xtorch, "PyTorch (array_api_compat.torch)", torch_dtype)
    shapes = [a.shape for a in case.inputs.values()]
    args = tuple(torch.tensor(a, dtype=torch_dtype) for a in case.inputs.values())
    tangents = tuple(torch.tensor(p, dtype=torch_dtype) for p in split(v, shapes))
    cotangent = torch.tensor(u, dtype=torch_dtype)

    def f(*a: Any) -> Any:
        return torch.reshape(_checked(case, case.func(*a, xp=xp), "PyTorch namespace"), (-1,))

    def jvp() -> np.ndarray:
        return torch.func.jvp(f, args, tangents)[1].detach().numpy().astype(np.float64)

    def vjp() -> np.ndarray:
        _, pull = torch.func.vjp(f, *args)
        return np.concatenate([g.detach().numpy().astype(np.float64).ravel() for g in pull(cotangent)])

    return jvp, vjp, lambda: f(*args)


_AUTODIFF = {"tape": _tape, "jax": _jax, "torch": _torch}


def prepare(method: str, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
    """The ``jvp`` or ``vjp`` row of ``method`` (``tape``, ``finite``, ``jax``, ``torch``) for ``case``.

    ``gradient()`` returns ``{"jvp": array shaped like the output}`` or the VJP per input (shaped like
    it); ``info`` carries ``product_gap`` on the vjp row and, for ``finite``, ``error_estimate`` (relative)
    and ``step``. Raises Skip where the method cannot form the product here, NoGradient for TensorFlow's
    None, ImportError where the method's framework is not installed, and the case's own exceptions.
    """
    if variant not in PRODUCT_VARIANTS:
        raise ValueError(f"unknown product variant {variant!r}; known: {PRODUCT_VARIANTS}")
    u, v = directions(case, dtype)
    out_shape = output_shape(case)
    info: dict[str, Any] = {}
    start = time.perf_counter()
    if method == "finite":
        if device != "CPU":
            raise Skip("finite differences run on the CPU")
        if variant == "jvp":
            found = finite_jvp(case, dtype, v)
            value, error, notes = found.value, found.error, found.notes
            info["step"] = found.step
            timed: Callable[[], Any] = lambda: finite_jvp(case, dtype, v).value  # noqa: E731
        else:
            value, error, notes = finite_vjp(case, dtype, u)
            timed = lambda: finite_vjp(case, dtype, u)[0]  # noqa: E731
            with_jvp = finite_jvp(case, dtype, v)
            info["product_gap"] = product_gap(u, with_jvp.value, value, v)
        norm, est = float(np.linalg.norm(value)), float(np.linalg.norm(error))
        info["error_estimate"] = est / (norm - est) if norm > est else (math.inf if est > 0 else 0.0)
        if notes:
            info["note"] = "; ".join(notes)
        f = numpy_function(case, dtype)
        x = flatten(case.inputs, list(case.inputs))
        f_timed: Callable[[], Any] = lambda: f(x)  # noqa: E731
    elif method in _AUTODIFF:
        jvp, vjp, f_timed = _AUTODIFF[method](case, dtype, device, u, v)
        timed = jvp if variant == "jvp" else vjp
        value = timed()
        if variant == "vjp":
            try:
                info["product_gap"] = product_gap(u, jvp(), value, v)
            except NoGradient:  # forward mode sees no connection where reverse mode does: no gap to measure
                info["product_gap"] = math.nan
    else:
        raise Skip(f"{method} has no JVP/VJP products")
    prepare_s = time.perf_counter() - start
    if variant == "jvp":
        shaped = np.asarray(value).reshape(out_shape)
        result: Callable[[], dict[str, np.ndarray]] = lambda: {"jvp": shaped.copy()}  # noqa: E731
    else:
        named = unflatten(np.asarray(value), case.inputs)
        result = lambda: {k: a.copy() for k, a in named.items()}  # noqa: E731
    return Prepared(gradient=result, timed=timed, f_timed=f_timed, prepare_s=prepare_s, info=info,
                    f_key="numpy" if method == "finite" else None)


# --------------------------------------------------------------------------- certified reference products
_derived: dict[tuple[int, str, str, int], tuple[Case, Case]] = {}


def _remember(case: Case, key: tuple[str, str, int], build: Callable[[], Case]) -> Case:
    """One derived case per (case object, kind, dtype, entry), so the reference's own cache applies to it."""
    full = (id(case), *key)
    hit = _derived.get(full)
    if hit is None or hit[0] is not case:
        hit = (case, build())
        _derived[full] = hit
    return hit[1]


def vjp_case(case: Case, dtype: str = "float64") -> Case:
    """The scalar case ``uᵀf`` (same inputs and point): its gradient is the VJP ``uᵀJ``."""
    u, _ = directions(case, dtype)
    func = case.func

    def build() -> Case:
        def weighted(*args: Any, xp: Any) -> Any:
            out = func(*args, xp=xp)
            return xp.sum(xp.asarray(u) * xp.reshape(out, (-1,)))

        return Case(name=f"{case.name}[uᵀf]", func=weighted, inputs=dict(case.inputs),
                    integer_inputs=case.integer_inputs, source_file=case.source_file, line=case.line)

    return _remember(case, ("vjp", dtype, 0), build)


def jvp_case(case: Case, k: int, dtype: str = "float64") -> Case:
    """The one-input scalar case ``t -> f_k(x + t·v)`` at t = 0: its derivative is entry k of the JVP.
    The point is x as ``dtype`` holds it (the inputs become constants of the function)."""
    _, v = directions(case, dtype)
    func = case.func
    shapes = [a.shape for a in case.inputs.values()]
    point = [a.astype(dtype).astype(np.float64) for a in case.inputs.values()]
    tangent = split(v, shapes)

    def build() -> Case:
        def along(t: Any, xp: Any) -> Any:
            args = [xp.asarray(x) + t * xp.asarray(w) for x, w in zip(point, tangent)]
            return xp.reshape(func(*args, xp=xp), (-1,))[k]

        return Case(name=f"{case.name}[out {k} along v]", func=along, inputs={"t": np.array(0.0)},
                    source_file=case.source_file, line=case.line)

    return _remember(case, ("jvp", dtype, k), build)


def reference_vjp(case: Case, dtype: str = "float64") -> tuple[Case, Any]:
    """(``vjp_case``, its certified reference in ``dtype``); raises what :func:`diffbench.reference.reference`
    raises."""
    from .reference import reference

    scalar = vjp_case(case, dtype)
    return scalar, reference(scalar, dtype)


def reference_jvp(case: Case, dtype: str = "float64") -> list[tuple[Case, Any]]:
    """Per output entry k, (``jvp_case(case, k)``, its certified reference in ``dtype``). Raises Skip past
    ``MAX_REFERENCE_OUTPUTS`` entries, and what the reference raises."""
    from .reference import reference

    m = output_size(case)
    if m > MAX_REFERENCE_OUTPUTS:
        raise Skip(f"the certified JVP takes one reference per output entry; {m} entries exceed "
                   f"MAX_REFERENCE_OUTPUTS = {MAX_REFERENCE_OUTPUTS}")
    out = []
    for k in range(m):
        scalar = jvp_case(case, k, dtype)
        out.append((scalar, reference(scalar, dtype)))
    return out


# --------------------------------------------------------------------------- gradient checks along random directions
#: directions a large gradient is checked along (``check_directions``); each costs at most 2·RICHARDSON_LEVELS
#: calls of f (8 usually) while no shrink is needed
CHECK_DIRECTIONS = 3
#: the false-alarm probability the rounding allowance of ``check_directions`` is sized for (its docstring)
FALSE_ALARM = 1e-6
#: ``check_directions`` adds Richardson levels until each truth's estimate is this small relative to it: one wrong
#: component among N moves gᵀw by about 0.1/√N of it (7e-5 at 2·10⁶ inputs for 10 %), so the tolerance, ten
#: estimates, stays some 70 times below it at worst (usually 10³: the estimate is a bound, benchmarks/RESULTS.md)
CHECK_ACCURACY = 1e-7
#: an exact method's allowed error per component, in eps of its size (the gradient contract's tolerance)
EXACT_TOLERANCE_EPS = 1e3


@dataclass
class DirectionalCheck:
    """The outcome of :func:`check_directions`: per direction, the method's ``got`` = gᵀw, the Richardson
    ``expected`` derivative along w, its ``error`` estimate and the ``tolerance`` |got − expected| was held to."""

    got: np.ndarray
    expected: np.ndarray
    error: np.ndarray
    tolerance: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> np.ndarray:
        """Per direction, whether it raised the alarm (a NaN anywhere is an alarm)."""
        with np.errstate(invalid="ignore"):
            return ~(np.abs(self.got - self.expected) <= self.tolerance)

    @property
    def passed(self) -> bool:
        return not bool(np.any(self.failed))

    def describe(self) -> str:
        """One sentence per failing direction (all of them when none fails)."""
        rows = np.flatnonzero(self.failed) if not self.passed else np.arange(self.got.size)
        parts = [f"direction {k}: gᵀw = {self.got[k]:.10g}, Richardson derivative along w = "
                 f"{self.expected[k]:.10g} ± {self.error[k]:.2g}, "
                 f"|difference| {abs(self.got[k] - self.expected[k]):.3g}"
                 f" > tolerance {self.tolerance[k]:.3g}" if self.failed[k] else
                 f"direction {k}: |difference| {abs(self.got[k] - self.expected[k]):.3g} ≤ tolerance "
                 f"{self.tolerance[k]:.3g}" for k in rows]
        return "; ".join(parts + self.notes)


def check_directions(gradient: np.ndarray, f: Callable[[np.ndarray], float] | None, x: np.ndarray, eps: float, *,
                     count: int = CHECK_DIRECTIONS, seed: int = 0, false_alarm: float = FALSE_ALARM,
                     rtol: float | None = None, atol: float | None = None,
                     line: Callable[[np.ndarray], Callable[[float], float]] | None = None) -> DirectionalCheck:
    """Check a flat ``gradient`` of the scalar ``f`` (float64 in, float out) at ``x`` along ``count`` random
    directions, without forming the gradient's truth.

    Direction k is ``w = r ⊙ m ⊙ max(|x|, 1)`` with r random signs (Rademacher) and m uniform in [1, 2]
    (``numpy.random.default_rng((PRODUCT_SEED, seed, k))``); the truth along it is the Richardson derivative
    of ``t -> f(x + t·w)`` at 0 (:func:`directional_derivative`, in float64) with its error estimate E. The
    alarm sounds where ``|gᵀw − D| > 10·E + c·EXACT_TOLERANCE_EPS·eps·sqrt(Σ (gᵢwᵢ)²) + log2(N)·eps64·Σ|gᵢwᵢ|``,
    with ``c = sqrt(2·ln(2·count/false_alarm))`` (``eps`` the gradient's dtype's epsilon).

    Why these numbers. A gradient whose components err by εᵢ with |εᵢ| ≤ 1000·eps·|gᵢ| (the contract's
    tolerance for an exact method) misses gᵀw by Σ εᵢ·wᵢ, whatever the magnitudes m a sum of terms of
    independent random sign: by Hoeffding's inequality it exceeds c·sqrt(Σ(εᵢwᵢ)²) with probability at most
    ``false_alarm/count``, so all directions together raise a false alarm with probability at most
    ``false_alarm`` (given that Richardson's estimate bounds its own error, which the factor 10 guards; the
    last term bounds the float64 sum gᵀw). A component i that is wrong by δ moves gᵀw by |δ|·mᵢ·sᵢ ≥ |δ|·sᵢ
    in every direction (|rᵢ| = 1 and mᵢ ≥ 1: unlike a Gaussian entry, never nearly 0), so it is caught with
    certainty wherever |δ|·sᵢ exceeds twice the tolerance. Several wrong components cancel in a direction
    only where their moves balance; the random magnitudes make that a chance of order ε per direction for
    a balance to within ε (two swapped components, errors +δ and −δ, are missed only if |mᵢsᵢ ± mⱼsⱼ| is
    that small in all ``count`` directions), where random signs alone would miss them with probability 2^-count.
    elementwise test |gᵢ − tᵢ| ≤ atol + rtol·|tᵢ| allows along w: atol·Σ|wᵢ| + rtol·Σ|gᵢwᵢ|.
    ``line(w)``, when given, returns ``t -> f(x + t·w)`` computed another way (in the function's own framework,
    without converting the point at every call); ``f`` is then not called. Raises what ``f`` raises.
    """
    gradient = np.asarray(gradient, np.float64).ravel()
    x = np.asarray(x, np.float64).ravel()
    scale = np.maximum(np.abs(x), 1.0)
    eps64 = float(np.finfo(np.float64).eps)
    c = math.sqrt(2 * math.log(2 * count / false_alarm))
    got, expected, error, tolerance, notes = [], [], [], [], []
    for k in range(count):
        rng = np.random.default_rng((PRODUCT_SEED, seed, k))
        w = np.where(rng.random(x.size) < 0.5, -1.0, 1.0) * rng.uniform(1.0, 2.0, x.size) * scale
        along = line(w) if line is not None else (lambda t, w=w: f(x + t * w))
        truth = directional_derivative(lambda t: np.atleast_1d(along(t)), first_step(x, w), eps64,
                                       enough=CHECK_ACCURACY)
        terms = gradient * w
        got.append(float(np.sum(terms)))
        expected.append(float(truth.value[0]))
        error.append(float(truth.error[0]))
        summing = math.log2(max(x.size, 2)) * eps64 * float(np.sum(np.abs(terms)))
        if rtol is not None or atol is not None:
            allowance = (atol or 0.0) * float(np.sum(np.abs(w))) + (rtol or 0.0) * float(np.sum(np.abs(terms)))
        else:
            allowance = c * EXACT_TOLERANCE_EPS * eps * float(np.linalg.norm(terms))
        tolerance.append(10 * error[-1] + allowance + summing)
        notes += [n for n in truth.notes if n not in notes]
    return DirectionalCheck(np.array(got), np.array(expected), np.array(error), np.array(tolerance), notes)
