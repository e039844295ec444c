"""One verdict and one diagnosis per row, used by ``run``, ``check``, the pytest plugin and
``assert_gradients`` alike.

:func:`judge` turns a computed gradient and the certified reference into a status, the
error measures and, for every status but ``ok``, a one-line diagnosis that names the
real cause (or says plainly that it is unknown). Nothing here depends on other rows, so
a single row measured by the plugin gets the same text as the same row in a full run.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics
from .case import Case
from .results import Cause, Status

#: TensorFlow gradient formulas known to lose accuracy or to be wrong at some points, by xp name
KNOWN_TF_GRADIENTS = {
    "tanh": "TensorFlow computes the gradient of tanh as 1 − tanh(x)², which is 0 once tanh(x) rounds to ±1 "
            "(|x| ≳ 9 in float32, ≳ 19 in float64) although the true slope sech²(x) is still representable",
    "prod": "TensorFlow's gradient of tf.reduce_prod (xp.prod) takes a special path where an input is exactly 0, "
            "and its second derivatives there miss the terms through that input",
    "sqrt": "TensorFlow computes the gradient of sqrt as 0.5/sqrt(x), infinite at 0",
    "atan2": "TensorFlow's gradient of atan2 divides by x² + y², which underflows for tiny inputs",
    "cumulative_prod": "TensorFlow's gradient of tf.math.cumprod (xp.cumulative_prod) divides the reversed "
                       "cumulative sum by x (div_no_nan), so where an input is exactly 0 it returns 0 instead of the "
                       "product of the other factors (and loses accuracy where an input is tiny); write the "
                       "products out, or use a custom gradient built from exclusive prefix and suffix products",
    "det": "TensorFlow's gradient of tf.linalg.det is det(A)·inv(A)ᵀ, which fails at a singular matrix (and loses "
           "accuracy near one) although the true gradient, the adjugate's transpose, exists there",
}
KNOWN_TF_GRADIENTS["cumprod"] = KNOWN_TF_GRADIENTS["cumulative_prod"]
KNOWN_TF_GRADIENTS["linalg.det"] = KNOWN_TF_GRADIENTS["det"]

#: what the tape differentiates, named for a person: xp name -> TensorFlow operation
TF_NAMES = {"prod": "tf.reduce_prod", "cumulative_prod": "tf.math.cumprod", "cumprod": "tf.math.cumprod",
            "det": "tf.linalg.det", "linalg.det": "tf.linalg.det", "sum": "tf.reduce_sum", "max": "tf.reduce_max",
            "min": "tf.reduce_min",
            "maximum": "tf.maximum", "minimum": "tf.minimum", "logaddexp": "tnp.logaddexp"}


def SECOND_DIFFERENCE_STEP(dtype: str) -> float:  # noqa: N802 - a constant per dtype
    """The relative step at which second differences balance truncation (h²) and rounding (eps/h²)."""
    return float(np.finfo(dtype).eps) ** 0.25


@dataclass(frozen=True)
class Verdict:
    """The status of one row, its error measures and its diagnosis (None when ``ok``)."""

    status: str
    rel_error: float
    max_error_eps: float
    diagnosis: str | None = None
    taylor_order: float = math.nan
    cause: Cause | None = None
    #: the relative error an exact method following the case's formula attains in this dtype (order 1)
    attainable_error: float = math.nan


def judge(case: Case | None, method: str, variant: str, dtype: str, gradient: np.ndarray, ref: Any, *,
          native: bool | None = None, order: int = 1, reference_hessian: np.ndarray | None = None,
          step: float | None = None, labels: list[str] | None = None) -> Verdict:
    """Judge one flat gradient (or, with ``order=2``, one Hessian) against the reference.

    ``ref`` is a :class:`diffbench.reference.Reference` for ``dtype``; ``native`` says
    whether the tape differentiated code other than the case's xp function (default:
    whether the case has a native implementation). ``step`` is a finite-difference
    row's relative step. Returns a :class:`Verdict`; raises nothing for a bad gradient.
    """
    label = f"{method}/{variant}"
    native = bool(case is not None and case.native is not None) if native is None else native
    flat = np.asarray(gradient, dtype=np.float64).ravel()
    if order == 2:
        return _judge_hessian(case, method, variant, dtype, np.asarray(gradient, dtype=np.float64), ref,
                              reference_hessian, native)
    if ref.undefined:
        rel, max_eps = metrics.errors(flat, ref.flat if ref.flat.size == flat.size else flat, dtype)
        text = (metrics.kink_diagnosis(ref, flat, label) if ref.kinks and not any(k.jump for k in ref.kinks)
                else f"the true gradient does not exist here: {ref.undefined}")
        return Verdict(Status.UNDEFINED, rel, max_eps, text, cause=Cause.NO_DERIVATIVE)
    ref_flat = np.array([float(v) for v in np.concatenate([np.ravel(v) for v in ref.values.values()])]) \
        if ref.values else ref.flat
    certified = ref.certified if ref.certified.size == flat.size else np.ones(flat.size, dtype=bool)
    scale = ref.scale if ref.scale.size == flat.size else None
    attainable = metrics.attainable_error(ref_flat, scale, dtype)
    radius = _truth_radius(ref, flat.size, scale, dtype)
    stationary = None
    if case is not None and scale is not None and not np.any(ref_flat) and not np.any(scale):
        # a stationary point with nothing cancelling: every method, exact or not, is judged at the gradient's size
        # one point-scale away (native code computing 2·(exp(log x0) − x1) at x0 = x1 rounds at that size)
        scale = stationary = _stationary_scale(ref, flat.size)
    status, rel, max_eps = metrics.classify(flat, ref_flat, method, variant, dtype, scale=scale, radius=radius)
    if status == Status.OK and method == "tape" and native and scale is not None and case is not None:
        status = _native_within_rounding(case, variant, dtype, flat, ref_flat, scale, ref, stationary)
    if status in (Status.OK, Status.INACCURATE) and not certified.all():
        # judged on what is certified only: wrong there is wrong; right there says nothing of the rest
        part, _, _ = metrics.classify(flat[certified], ref_flat[certified], method, variant, dtype,
                                      scale=None if scale is None else scale[certified],
                                      radius=None if radius is None else radius[certified])
        status = Status.UNCERTAIN if part == Status.OK else part
    taylor, taylor_why = math.nan, None
    if status not in ("nan", "inf") and case is not None and case.func is not None:
        with contextlib.suppress(Exception):
            taylor, taylor_why = metrics.taylor_test(case, flat, ref)
    if status == Status.OK:
        return Verdict(status, rel, max_eps, None, taylor, attainable_error=attainable)
    if status == Status.UNCERTAIN:
        return Verdict(status, rel, max_eps, f"{ref.uncertain}; on the certified components the gradient is within "
                                             "tolerance, so no verdict is given", taylor, Cause.NOT_CERTIFIED,
                       attainable_error=attainable)
    cause, text = accuracy_diagnosis(case, method, variant, dtype, status, rel, ref_flat, ref, flat=flat,
                                     native=native, step=step, labels=labels, taylor=taylor, taylor_why=taylor_why)
    return Verdict(status, rel, max_eps, text, taylor, cause, attainable_error=attainable)


def _truth_radius(ref: Any, n: int, scale: np.ndarray | None, dtype: str) -> np.ndarray | None:
    """The truth's own uncertainty per component (absolute), where it has one: for a truth without a tape
    (assert_gradients' Richardson differences, whose scale carries their error estimate) the tolerance at
    that scale. A certified reference has none to speak of: its proven
    radius (``Reference.radius``, relative) is below 2⁻⁶⁰ of each certified component, far below any dtype's
    rounding, and an uncertified component is set apart by ``Reference.certified``, never forgiven by a radius."""
    from .reference import Reference

    if isinstance(ref, Reference):
        return None
    if getattr(ref, "tape", None) is None and scale is not None:
        return metrics.tolerance("tape", "eager", dtype) * np.asarray(scale, dtype=np.float64)
    return None


class DifferencesTruth:
    """A reference made of finite differences: no cancellation scale is known, so each component is
    judged at its own size, widened by ten times the differences' error estimate."""

    truth_name = "Richardson-extrapolated differences of the function in float64"
    code_name = "the TensorFlow function under test"
    undefined = None
    order2_undefined = None
    uncertain = None
    kinks: list[Any] = []
    tape = None
    ops: set[str] = set()
    magnitude = float("nan")

    def __init__(self, values: np.ndarray, error: np.ndarray, dtype: str) -> None:
        eps = float(np.finfo(dtype).eps)
        self.values = {"flat": values}
        self.flat = values
        self.scale = np.maximum(np.abs(values), 10 * error / (1e3 * eps))
        self.certified = np.ones(values.size, dtype=bool)
        self.rounding = np.zeros(values.size)


def differences_truth(f: Any, point: np.ndarray, dtype: str) -> DifferencesTruth:
    """The truth where no certified reference exists: Richardson-extrapolated differences of the flat
    function ``f`` at ``point`` (float64), with their own error estimate. Raises what ``f`` raises."""
    from .engines import finite

    with np.errstate(all="ignore"):
        result = finite.differentiate(f, np.asarray(point, dtype=np.float64), "richardson")
    return DifferencesTruth(np.asarray(result.value, dtype=np.float64),
                            np.abs(np.asarray(result.error, dtype=np.float64)), dtype)


def _native_within_rounding(case: Case, variant: str, dtype: str, flat: np.ndarray, ref_flat: np.ndarray,
                            scale: np.ndarray, ref: Any = None, stationary: np.ndarray | None = None) -> str:
    """Native code is held to the contract like any method: within 1000·eps of each component's judging
    size. The one size that comes from the *xp* formula is that of a zero truth (its rounding scale sᵢ),
    and the native code may compute something else: there its error is accepted only as far as the same
    tape, differentiating the xp formula in the same dtype, errs there too, and that formula's error is
    itself within its rounding scale. A nonzero truth is never widened. At a stationary point with nothing
    cancelling (``stationary``: the gradient's size one point-scale away) that size is the maths', not the
    formula's, and holds for the native code too."""
    eps = float(np.finfo(dtype).eps)
    tol = 1e3 * eps
    floor = 1e3 * float(np.finfo(dtype).smallest_subnormal)
    with np.errstate(all="ignore"):
        err = np.abs(flat - ref_flat)
    strict = err <= np.maximum(tol * metrics.judging_sizes(ref_flat, stationary), floor)
    if strict.all():
        return "ok"
    xp_grad = _formula_gradient(case, variant, dtype, ref)
    if xp_grad is None:  # no comparison possible: the native code stands on its own
        return "inaccurate"
    with np.errstate(all="ignore"):
        xp_err = np.nan_to_num(np.abs(xp_grad - ref_flat), nan=np.inf)
    forgiven = (ref_flat == 0) & (err <= 16 * xp_err) & (xp_err <= np.maximum(tol * scale, floor))
    return "ok" if bool(np.all(strict | forgiven)) else "inaccurate"


def _formula_gradient(case: Case, variant: str, dtype: str, ref: Any = None) -> np.ndarray | None:
    """The tape's gradient of the case's xp formula (not its native code) in ``dtype``: what following the
    formula gives. Kept on the reference; None where it cannot run."""
    import dataclasses

    from .engines import flatten, get_engine

    key = ("formula-gradient", variant if variant != "forward" else "eager", dtype)
    cache = ref.__dict__.setdefault("_formula_gradients", {}) if ref is not None and hasattr(ref, "__dict__") else {}
    if key not in cache:
        try:
            formula = dataclasses.replace(case, native=None)
            prepared = get_engine("tape").prepare(formula, key[1], dtype, "CPU")
            with np.errstate(all="ignore"):
                cache[key] = np.asarray(flatten(prepared.gradient(), list(case.inputs)), dtype=np.float64)
        except Exception:  # noqa: BLE001 - the formula does not run on the tape
            cache[key] = None
    return cache[key]


def _hessian_scale(ref: Any) -> float:
    """‖∇f‖ scale per unit of input: the gradient's scale over max(‖x‖∞, 1), or, where that is 0, the
    gradient one point-scale away over that distance."""
    x = np.array([float(v) for v in ref.point]) if ref.point else np.zeros(0)
    spread = max(float(np.max(np.abs(x))) if x.size else 0.0, 1.0)
    # scaled norms: 1e160-sized scales overflow np.linalg.norm to inf, which would accept any Hessian
    size = metrics._norm(np.asarray(ref.scale, dtype=np.float64)) if ref.scale.size else 0.0
    if size == 0:
        size = metrics._norm(_stationary_scale(ref, max(x.size, 1)))
    return size / spread


def _stationary_scale(ref: Any, n: int) -> np.ndarray:
    """A gradient scale for finite differences where the gradient is exactly 0 term by term (a
    stationary point with nothing cancelling): the size of the gradient one point-scale away,
    ‖∇f(x + s·u)‖ with s = max(|x|, 1) and u a fixed random unit direction (halved until f is
    defined there). Differences err in those units (h·f'', h²·f‴), whatever f's scale."""
    import mpmath

    if ref.tape is None:
        return np.zeros(n)
    cache = ref.__dict__.setdefault("_stationary_scale", {}) if hasattr(ref, "__dict__") else {}
    if n not in cache:
        cache[n] = _stationary_size(ref, n, mpmath)
    return cache[n]


def _stationary_size(ref: Any, n: int, mpmath: Any) -> np.ndarray:
    """The uncached search of :func:`_stationary_scale`."""
    rng = np.random.default_rng(7)
    u = rng.standard_normal(n)
    u /= np.linalg.norm(u)
    x = [float(v) for v in ref.point]
    for k in range(0, 60, 4):
        p = [mpmath.mpf(xi) + mpmath.mpf(max(abs(xi), 1.0) * ui) * mpmath.ldexp(1, -k) for xi, ui in zip(x, u)]
        try:
            g = np.array([float(v) for v in ref.tape(p, 192).gradient])
        except Exception:  # noqa: BLE001 - outside the domain: come closer
            continue
        if np.all(np.isfinite(g)) and np.any(g):
            return np.full(n, metrics._norm(g) / math.sqrt(max(n, 1)))
    return np.zeros(n)


def _judge_hessian(case: Case | None, method: str, variant: str, dtype: str, hess: np.ndarray, ref: Any,
                   ref_hess: np.ndarray | None, native: bool) -> Verdict:
    if ref.undefined or ref.order2_undefined:
        reason = ref.undefined or ref.order2_undefined
        return Verdict(Status.UNDEFINED, math.nan, math.nan, f"the true Hessian does not exist here: {reason}",
                       cause=Cause.NO_DERIVATIVE)
    if ref_hess is None or not np.all(np.isfinite(ref_hess)):
        return Verdict(Status.UNDEFINED, math.nan, math.nan,
                       "the true Hessian does not exist here: a second derivative is not finite",
                       cause=Cause.NO_DERIVATIVE)
    scale = None
    if not np.any(ref_hess):
        # a zero Hessian has no size of its own: second derivatives are judged at the size of the gradient's
        # change over the point's scale, which scales with f like the Hessian does
        scale = np.full(hess.size, _hessian_scale(ref) / max(hess.shape[0], 1))
    status, rel, max_eps = metrics.classify(hess, ref_hess, method, variant, dtype, order=2, scale=scale)
    if status == Status.OK:
        return Verdict(status, rel, max_eps)
    cause, text = accuracy_diagnosis(case, method, variant, dtype, status, rel, ref_hess.ravel(), ref, order=2,
                                     flat=hess.ravel(), native=native)
    return Verdict(status, rel, max_eps, "second derivatives: " + text, cause=cause)


def _matrix_text(m: np.ndarray) -> str:
    """A small matrix for a sentence: diag(9, −3) where it is diagonal, else its rows."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape[0] == m.shape[1] and not np.any(m - np.diag(np.diag(m))):
        return "diag(" + ", ".join(f"{v:.6g}" for v in np.diag(m)) + ")"
    return "[" + "; ".join(", ".join(f"{v:.6g}" for v in row) for row in m) + "]"


def none_hessian_truth(case: Case, message: str, missing: list[str], ref_hess: np.ndarray) -> str:
    """TensorFlow's None for the second derivatives along ``missing``, followed by what the certified reference
    Hessian shows for those rows: 0 (then UnconnectedGradients.ZERO gives the right Hessian) or the values
    TensorFlow did not compute. Nothing is claimed that the reference does not show."""
    from .reference import labels as input_labels

    names = input_labels(case)
    owners = [name for name, value in case.inputs.items() for _ in range(np.asarray(value).size)]
    rows = [i for i, owner in enumerate(owners) if owner in missing]
    hess = np.asarray(ref_hess, dtype=np.float64)
    if hess.ndim != 2 or hess.shape[0] != len(owners) or not rows:
        return f"{message}; the true second derivatives there are not known to diffbench"
    block = hess[np.ix_(rows, rows)]
    whole = hess[rows, :]
    if not np.any(whole):
        return (f"{message}; the certified second derivatives along {', '.join(missing)} are 0 here, so "
                "unconnected_gradients=tf.UnconnectedGradients.ZERO on the outer tape gives the right Hessian")
    shown = _matrix_text(block) if np.any(block) or len(rows) == len(owners) else _matrix_text(whole)
    where = ("" if len(rows) == len(owners) else
             f" (rows {', '.join(names[i] for i in rows[:4])}{', …' if len(rows) > 4 else ''})")
    return (f"{message}; the certified second derivatives{where} are {shown}, not 0: the second-order path is "
            "cut, so no option of the tape recovers them here (unconnected_gradients=ZERO would give a wrong "
            "Hessian); a Hessian needs a backward pass that is itself differentiable")


# --------------------------------------------------------------------------- the causes
def _worst(flat: np.ndarray, ref_flat: np.ndarray, labels: list[str] | None, order: int) -> str:
    """The component that is furthest off, with both values."""
    if flat.size != ref_flat.size or flat.size == 0:
        return ""
    with np.errstate(all="ignore"):
        diff = np.abs(np.nan_to_num(flat, nan=np.inf) - ref_flat)
    i = int(np.argmax(diff))
    if order == 2:
        n = int(round(math.sqrt(flat.size)))
        name = f"({i // n}, {i % n})"
    else:
        name = labels[i] if labels and i < len(labels) else f"component {i}"
    return f"; worst at {name}: true {ref_flat[i]:.10g}, got {flat[i]:.10g}"


def _ops_text(ref: Any) -> str:
    ops = sorted(getattr(ref, "ops", set()) or set())
    return ", ".join(f"xp.{op} ({TF_NAMES.get(op, 'tf.' + op)})" for op in ops) or "its arithmetic"


def accuracy_diagnosis(case: Case | None, method: str, variant: str, dtype: str, status: str, rel: float,
                       ref_flat: np.ndarray, ref: Any, order: int = 1, flat: np.ndarray | None = None,
                       native: bool = False, step: float | None = None, labels: list[str] | None = None,
                       taylor: float = math.nan, taylor_why: str | None = None) -> tuple[Cause, str]:
    """Why a row is ``inaccurate``, ``nan`` or ``inf``: the first cause that applies, in a fixed order, as
    (cause, text)."""
    from .engines import finite
    from .engines import flatten

    if labels is None and case is not None:
        from .reference import labels as input_labels

        labels = input_labels(case)
    text = None
    if case is not None and case.func is not None:
        f = finite.function_of(case, dtype)
        x = flatten(case.inputs, list(case.inputs)).astype(dtype)
        text = metrics.overflow_diagnosis(case, dtype, metrics.float_events(f, x), "function")
        if text is None and method == "symbolic":
            with contextlib.suppress(Exception):
                text = _symbolic_overflow(case, variant, dtype, x)
    if text is not None:
        return Cause.OVERFLOW, text
    worst = _worst(flat, ref_flat, labels, order) if flat is not None else ""
    if status in ("nan", "inf"):
        known = [KNOWN_TF_GRADIENTS[op] for op in sorted(getattr(ref, "ops", set()) or set())
                 if op in KNOWN_TF_GRADIENTS]
        if method == "tape" and known and not native:
            return Cause.TF_FORMULA, f"the tape produced {status} in {dtype} although the function is finite here: " \
                                     f"{known[0]}"
        if method == "tape":
            return Cause.BACKWARD_RANGE, (
                    f"the tape produced {status} in {dtype} although the function is finite here: an intermediate of "
                    "the backward pass left the range (e.g. exp(x)/(1+exp(x)) = inf/inf, or 0·inf); use a stable "
                    "formulation (tf.math.softplus, logaddexp)")
        if method == "finite" and case is not None and ref.tape is not None:
            crossing = _crossing(case, ref, dtype, variant, step, order)
            crossing_cause = Cause.STENCIL_KINK
            if crossing is None and order == 1 and variant != "complex_step" and case.func is not None \
                    and x.size <= _MAX_TRIAL_INPUTS:
                with contextlib.suppress(Exception):
                    from .reference import labels as input_labels

                    c = finite.step_scale(variant, dtype) if step is None or not math.isfinite(step) else step
                    reach = c * np.maximum(np.abs(x.astype(np.float64)), 1.0) * (2 if variant == "richardson" else 1)
                    crossing = _pole_or_domain(f, x, reach, variant != "forward", input_labels(case))
                    crossing_cause = Cause.POLE_OR_DOMAIN
            if crossing:
                return crossing_cause, f"{status} in {dtype}: {crossing}"
        return Cause.NON_FINITE, f"{status} in {dtype} with no overflow in the function itself"
    order_text = (f"; the Taylor test is not measurable here: {taylor_why}" if math.isnan(taylor) and taylor_why
                  else "" if math.isnan(taylor) else
                  f"; the Taylor test's order is {taylor:.2f} (2 means right, 1 wrong)")
    what = "second derivatives" if order == 2 else "gradient"
    ties = sorted({t for t in getattr(ref, "ties", ()) or ()})
    if order == 1 and ties and getattr(ref, "undefined", None) is None and metrics.is_exact(method, variant):
        return Cause.TIE, (f"a tie of {', '.join(ties)} exactly at this point, where the function is differentiable: "
                f"{method}/{variant} takes one side's derivative by a convention (maximum picks its first argument, "
                "sign(0) = 0, Heaviside(0) = ½) while the true derivative is the limit from around it (relative "
                f"error {rel:.2g}{worst}); move the point off the tie or write the function without the switch")
    if order == 1 and flat is not None and metrics.is_exact(method, variant):
        found = _function_cause(case, variant, dtype, flat, ref_flat, ref, native and method == "tape", rel, worst,
                                labels)
        if found is not None:
            return found
    if order == 2 and method in ("tape", "symbolic") and not native:
        known = [KNOWN_TF_GRADIENTS[op] for op in sorted(getattr(ref, "ops", set()) or set())
                 if op in KNOWN_TF_GRADIENTS and method == "tape"]
        source = "the nested tapes' second derivatives" if method == "tape" else "SymPy's second-derivative formula"
        return Cause.SECOND_ORDER_FORMULA, (f"{source}, evaluated in {dtype}, are off by a relative {rel:.2g}{worst}: "
                + (known[0] if known else "the formula cancels terms much larger than the result at this point, or "
                   "one of its operations' derivative formulas loses accuracy here (Hessians are judged normwise)"))
    flushed = _flushed_subnormals(method, variant, dtype, flat, ref_flat, order, labels)
    if flushed:
        return Cause.FLUSH_TO_ZERO, flushed
    if method == "tape":
        if native:
            verb = "disagree" if order == 2 else "disagrees"
            truth = getattr(ref, "truth_name", "the certified reference")
            code = getattr(ref, "code_name", "the case's own TensorFlow code")
            return Cause.NATIVE, (f"the tape differentiates {code}, and its {what} {verb} with "
                    f"{truth} beyond rounding (relative error {rel:.2g}){worst}: check its "
                    f"tf.custom_gradient or native implementation{order_text}")
        known = [KNOWN_TF_GRADIENTS[op] for op in sorted(getattr(ref, "ops", set()) or set())
                 if op in KNOWN_TF_GRADIENTS]
        cause = known[0] if known else ("one of TensorFlow's built-in gradient formulas loses accuracy or is wrong "
                                        f"here (the case uses {_ops_text(ref)})")
        return (Cause.TF_FORMULA if known else Cause.UNKNOWN), (f"the case has no custom gradient, so the error (relative {rel:.2g}{worst}) comes from TensorFlow's "
                f"built-in {what}: {cause}{order_text}")
    if method == "symbolic":
        return Cause.SYMPY_FORMULA, (f"SymPy's formula for the {what}, evaluated in {dtype}, loses accuracy here although the maths is "
                f"well-conditioned (relative error {rel:.2g}{worst}): the derivative SymPy wrote cancels, e.g. "
                "1 − tanh(x)² once tanh(x) rounds to 1; the tape or the complex step follow the case's own formula")
    if method == "finite" and case is not None:
        with contextlib.suppress(Exception):
            if variant == "complex_step" and order == 1:
                return Cause.FD_ERROR, _complex_step_diagnosis(case, dtype, rel, ref_flat, ref)
            # every finite-difference text names the method's own limit (a kink or pole in reach, truncation,
            # rounding): what matters to decisions is that it is explained
            return Cause.FD_ERROR, fd_diagnosis(case, dtype, variant, rel, ref_flat, ref, step=step, order=order)
    return Cause.UNKNOWN, (f"{method}/{variant} is beyond tolerance (relative error {rel:.2g}{worst}) with no overflow, and rounding "
            "in the formula does not explain it; the cause is not known to diffbench")


def _symbolic_overflow(case: Case, variant: str, dtype: str, x: np.ndarray) -> str | None:
    """Where the symbolic gradient overflows or goes invalid: for the symengine variant, SymEngine's own compiled
    gradient (no SymPy work: the row did not use SymPy unless SymEngine fell back to it), else SymPy's formula
    lambdified to NumPy, whose warnings name the operation: the function the row's variant compiled, reused (a
    second compilation of a swollen formula costs more than the gradient it checks)."""
    from .engines import symbolic

    if variant == "symengine":
        try:
            values = np.asarray(symbolic.symengine_gradient(case, dtype), dtype=np.float64)
        except symbolic.SymEngineLacks:
            pass  # the row was made by SymPy: its formula is checked below
        else:
            with np.errstate(all="ignore"):
                bad = ~np.isfinite(values)
            if not bad.any():
                return None
            return (f"SymEngine's compiled gradient formula leaves the {dtype} range at {describe_point(case)} "
                    f"({int(bad.sum())} of {values.size} components not finite) although the function is finite "
                    "there: an intermediate of the derivative overflows or divides by zero; rescale the inputs or "
                    "rewrite the function in a stable form")
    fn = symbolic.numpy_gradient(case, "numpy-nocse" if variant == "numpy-nocse" else "numpy")
    return metrics.overflow_diagnosis(case, dtype, metrics.float_events(fn, list(x)), "symbolic gradient")


def _flushed_subnormals(method: str, variant: str, dtype: str, flat: np.ndarray | None, ref_flat: np.ndarray,
                        order: int, labels: list[str] | None) -> str | None:
    """The flush-to-zero text, where every component off beyond rounding has a true value that is subnormal in
    ``dtype`` and the method returned 0 for it: the framework computes with subnormals flushed to zero."""
    if flat is None or flat.size != ref_flat.size or not flat.size or not metrics.is_exact(method, variant):
        return None
    info = np.finfo(dtype)
    eps, tiny = float(info.eps), float(info.tiny)
    with np.errstate(all="ignore"):
        wrong = ~(np.abs(flat - ref_flat) <= 1e3 * eps * np.abs(ref_flat))
        subnormal = (np.abs(ref_flat) > 0) & (np.abs(ref_flat) < tiny) & (flat == 0)
    if not wrong.any() or not np.all(subnormal[wrong]):
        return None
    i = int(np.argmax(wrong))
    name = labels[i] if labels and i < len(labels) and order == 1 else f"component {i}"
    framework = {"tape": "TensorFlow", "jax": "JAX (XLA)", "torch": "PyTorch"}.get(method, method)
    probe = (f" (on this CPU tf.constant({abs(ref_flat[i]):.2g}, tf.{dtype}) * 1.0 is 0)"
             if method == "tape" and _tf_flushes(dtype, abs(float(ref_flat[i]))) else "")
    return (f"flush-to-zero: the true {'second derivative' if order == 2 else 'derivative'} at {name} is "
            f"{ref_flat[i]:.3g}, a subnormal number in {dtype} (below its smallest normal {tiny:.3g}), and "
            f"{framework} computes with subnormals flushed to zero{probe}, so it returned {flat[i]:.3g}; the maths "
            "and the formula are right: rescale the function (multiply it by a power of two) so its derivative is a "
            "normal number, or compute in a wider dtype")


def _tf_flushes(dtype: str, value: float) -> bool:
    """Whether TensorFlow's CPU kernels flush the subnormal ``value`` times 1 to zero in ``dtype``."""
    try:
        import tensorflow as tf

        return float((tf.constant(value, getattr(tf, dtype)) * 1.0).numpy()) == 0.0
    except Exception:  # noqa: BLE001 - no probe: the text then states only what the values show
        return False


#: a condition number ‖∇f‖·‖x‖/|f| from which on f itself is called ill-conditioned: the rounding of its
#: inputs alone costs it three digits
ILL_CONDITIONED = 1e3
#: the tape walk that finds where path contributions cancel runs on tapes of at most this many nodes
_MAX_WALK_NODES = 200_000
#: SymPy names the cancelling terms and suggests a series for expressions of at most this many operations
_MAX_NAMING_OPS = 60
#: ... and only where the reference's tape has at most this many nodes
_MAX_NAMING_NODES = 200
_GENERIC_REWRITE = "e.g. its Taylor series near the point, or a library function for the cancelling combination"


def _function_cause(case: Case | None, variant: str, dtype: str, flat: np.ndarray, ref_flat: np.ndarray, ref: Any,
                    native: bool, rel: float, worst: str, labels: list[str] | None) -> tuple[Cause, str] | None:
    """The function's own cause of an exact row's inaccuracy, or None where the error is beyond what the
    case's formula attains in ``dtype`` (then the method is to blame).

    Attained: every failing component's error is within 1000·eps·sᵢ (the rounding of the derivative's
    path sums, sᵢ = Σ_paths Π|∂|), or within ten times what rounding every computed value moves the
    gradient (``Reference.rounding``: cancellation in the values), and not avoided by the formula followed
    in the dtype's precision where random roundings barely move it (then a method's bug hides behind a large
    but exactly cancelling sᵢ). Native code is the function's victim
    only where the tape on the case's xp formula errs as much. Which cause: ``conditioning`` where f is
    ill-conditioned (‖∇f‖·‖x‖/|f| ≥ ``ILL_CONDITIONED``) or where the cancellation is spread along a chain
    (no single node loses half the digits); ``formula-cancellation`` where one node's path contributions
    cancel; ``cancellation`` where the values themselves cancel."""
    n = flat.size
    scale = getattr(ref, "scale", None)
    if scale is None or scale.size != n or not n or getattr(ref, "tape", None) is None:
        return None
    eps = float(np.finfo(dtype).eps)
    tol = 1e3 * eps
    floor = 1e3 * float(np.finfo(dtype).smallest_subnormal)
    with np.errstate(all="ignore"):
        err = np.abs(flat - ref_flat)
        sizes = metrics.judging_sizes(ref_flat, scale)
        failing = (err > np.maximum(tol * sizes, floor)) | metrics.violates_hard_rule(flat, ref_flat, dtype)
        if not failing.any():
            return None
        attained = np.maximum(tol * scale, floor)
        by_scale = bool(np.all(err[failing] <= attained[failing]))
    followed = _formula_in_dtype(ref, dtype)
    rounding = None
    if not by_scale:
        rounding = getattr(ref, "rounding", None)
        if rounding is None or rounding.size != n:
            return None
        with np.errstate(all="ignore"):
            explained = err <= 10 * rounding + attained
            if followed is not None and followed.size == n:
                # a few random roundings can move a component less than the formula's own round-to-nearest
                # evaluation does: where that evaluation errs as much, the function as written forces the error
                explained |= err <= 2 * np.nan_to_num(np.abs(followed - ref_flat), nan=0.0) + attained
        if not np.all(explained[failing]):
            return None
    moved = None
    with contextlib.suppress(Exception):
        moved = ref.rounding
    if followed is not None and followed.size == n and moved is not None and moved.size == n:
        # the formula does not force an error that it avoids when followed in the dtype's own precision (each
        # operation rounded to nearest) and that random roundings of all its values move ten times less:
        # Σ cumprod(x) + 1e20·x₁ − 1e20·x₁, whose 1e20 paths cancel exactly, beside TensorFlow's wrong cumprod.
        # Either alone can be luck where the formula does cancel (sin(x)/x at 0.019: 16000·eps attainable).
        within = np.maximum(tol * sizes, floor)
        with np.errstate(all="ignore"):
            avoided = (np.nan_to_num(np.abs(followed - ref_flat), nan=np.inf) <= within) & (err > 10 * moved + within)
        if np.any(avoided[failing]):
            return None
    if native:
        # the native code is the formula's victim only where it gives what the tape gives on the xp formula
        xp_grad = _formula_gradient(case, variant, dtype, ref) if case is not None else None
        with np.errstate(all="ignore"):
            if xp_grad is None or not np.all((np.abs(flat - xp_grad) <= 0.1 * err + tol * sizes)[failing]):
                return None
    with np.errstate(all="ignore"):
        i = int(np.argmax(np.where(failing, err / np.maximum(sizes, np.finfo(float).tiny), -1.0)))
    name = labels[i] if labels and i < len(labels) else f"component {i}"
    kappa = _condition_number(ref, ref_flat)
    # how much the derivative's path sums exceed the component: the digits every exact method loses there
    loss = float(scale[i]) / max(abs(float(ref_flat[i])), float(sizes[i]), np.finfo(float).tiny)
    node = _cancelling_node(ref, i, labels)
    spread = node is None or (loss > 1 and math.log(max(node[0], 1.0)) < 0.5 * math.log(loss))
    kappa_text = f"{kappa:.2g}" if math.isfinite(kappa) else "infinite (f = 0 here)"
    if kappa >= ILL_CONDITIONED or (by_scale and spread and node is not None):
        with contextlib.suppress(Exception):
            rounding = ref.rounding if rounding is None else rounding
        amplified = []
        if loss >= 10:
            amplified.append(f"the derivative's path sums for {name} reach {float(scale[i]):.3g} (Σ_paths Π|∂|), "
                             f"{loss:.2g} times the true {float(ref_flat[i]):.4g}")
        if rounding is not None and rounding.size == n and ref_flat[i] != 0:
            moved = float(rounding[i]) / abs(float(ref_flat[i]))
            amplified.append(f"rounding every value it computes by half a unit of {dtype} moved ∂f/∂{name} by "
                             f"{moved:.2g} of its size in the reference's trial, an amplification of "
                             f"{moved / (eps / 2):.2g}")
        wider = "float64 or wider" if dtype == "float32" else "more than float64 (mpmath, double-double)"
        return Cause.CONDITIONING, (
            f"the function is ill-conditioned as written, so every exact method following it is off as much "
            f"(relative error {rel:.2g}{worst}): its condition number ‖∇f‖·‖x‖/|f| is {kappa_text}"
            + (", and its chain of operations amplifies rounding: " + "; ".join(amplified) if amplified else "")
            + f". No method can do better in {dtype}: compute in {wider}, or differentiate a better-conditioned "
            "quantity (fewer steps of the chain, a product in log space)")
    if not by_scale:
        amplification = float(np.nanmax(np.where(failing, rounding / np.maximum(sizes, np.finfo(float).tiny), 0.0)))
        return Cause.CANCELLATION, (
            f"cancellation in the function's own values: rounding what the formula computes in {dtype} alone moves "
            f"the gradient by up to {amplification:.2g} times its own size, so every method that follows this formula "
            f"is off as much (relative error {rel:.2g}{worst}); rewrite it in a cancellation-free form (log1p, "
            "expm1, 2·sin²(x/2) for 1 − cos x)" + (" or compute in float64" if dtype == "float32" else ""))
    # SymPy names the terms only of a small formula: its trace counts operations of the expression *tree*,
    # exponential in a tape whose values are reused (x·(1 − x) repeated)
    small = node is not None and node[4] <= _MAX_NAMING_NODES and case is not None
    terms = _formula_terms(case, i, ref) if small else None
    if terms is None and node is not None:
        _, contributions, total, where, _ = node
        shown = ", ".join(f"{c:+.3g}" for c in contributions[:3])
        terms = (f"at {where} the derivative sums path contributions {shown}, which cancel to {total:.3g}")
    terms = terms or f"its terms, of size {float(scale[i]):.3g} together, cancel to {float(ref_flat[i]):.4g}"
    return Cause.FORMULA_CANCELLATION, (
        f"the derivative's formula cancels here, though f itself is well-conditioned (condition number "
        f"{kappa_text}): {terms}. Every exact method following this formula rounds at the size of those terms, "
        f"eps·{float(scale[i]):.3g}, {loss * eps:.2g} of the true ∂f/∂{name} = {float(ref_flat[i]):.4g} (relative "
        f"error {rel:.2g}{worst}). Rewrite f so the terms cancel analytically: "
        f"{_rewrite(case, i, ref) if small else _GENERIC_REWRITE}")


def _formula_in_dtype(ref: Any, dtype: str) -> np.ndarray | None:
    """The gradient of the case's xp formula evaluated on the reference's tape at the dtype's precision
    (53 bits for float64, 24 for float32: every operation rounded to nearest, exponents unbounded), kept on
    the reference; None where it cannot run."""
    import mpmath

    cache = ref.__dict__.setdefault("_formula_in_dtype", {}) if hasattr(ref, "__dict__") else {}
    if dtype not in cache:
        cache[dtype] = None
        with contextlib.suppress(Exception):
            bits = int(np.finfo(dtype).nmant) + 1
            point = list(ref.point)
            if ref.tape is not None and point:
                out = ref.tape(point, bits)
                with mpmath.workprec(bits):
                    cache[dtype] = np.array([float(v) for v in out.gradient], dtype=np.float64)
    return cache[dtype]


def _condition_number(ref: Any, ref_flat: np.ndarray) -> float:
    """‖∇f‖·‖x‖/|f| at the point (infinite where f = 0 and the gradient is not)."""
    x = np.array([float(v) for v in getattr(ref, "point", [])], dtype=np.float64)
    try:
        f = abs(float(ref.f_value))
    except (TypeError, ValueError, AttributeError):
        return math.nan
    top = metrics._norm(np.asarray(ref_flat, dtype=np.float64)) * metrics._norm(x)
    if f == 0:
        return math.inf if top > 0 else 0.0
    return top / f


def _cancelling_node(ref: Any, i: int, labels: list[str] | None = None
                     ) -> tuple[float, list[float], float, str, int] | None:
    """The node on input i's paths whose adjoint sums path contributions that cancel the most: (the ratio
    Σ|contribution| / |Σ contribution|, its contributions largest first, their sum, a name for the node, the
    number of nodes on the tape),
    walked read-only on the reference's tape at its first precision. None where no node sums two or more
    contributions, or the tape is too large to walk."""
    cache = ref.__dict__.setdefault("_cancelling_nodes", {}) if hasattr(ref, "__dict__") else {}
    if i not in cache:
        cache[i] = _walk_for_cancellation(ref, i, labels)
    return cache[i]


def _walk_for_cancellation(ref: Any, i: int, labels: list[str] | None
                           ) -> tuple[float, list[float], float, str, int] | None:
    """The walk behind :func:`_cancelling_node` (uncached)."""
    import mpmath

    from .reference import PRECISIONS

    try:
        ev = ref.tape(list(ref.point), PRECISIONS[0])
    except Exception:  # noqa: BLE001 - no tape to walk
        return None
    nodes = ev.nodes
    if not nodes or len(nodes) > _MAX_WALK_NODES or i >= len(ev.inputs):
        return None
    from .mptape import to_mpf  # the tape's values and partials are balls: walked at their midpoints

    out = next((v for v in reversed(nodes) if to_mpf(v.value) == to_mpf(ev.value)), None)
    if out is None:
        return None
    # the nodes on i's paths: those that depend on input i
    on_path = {ev.inputs[i].index}
    for v in nodes[:out.index + 1]:
        if any(parent.index in on_path for parent, _ in v.parents):
            on_path.add(v.index)
    with mpmath.workprec(PRECISIONS[0]):
        adjoint: dict[int, Any] = {out.index: mpmath.mpf(1)}
        parts: dict[int, list[Any]] = {}
        for node in reversed(nodes[:out.index + 1]):
            g = adjoint.get(node.index)
            if g is None:
                continue
            for parent, partial in node.parents:
                c = to_mpf(partial) * g
                adjoint[parent.index] = adjoint.get(parent.index, 0) + c
                if parent.index in on_path:
                    parts.setdefault(parent.index, []).append(c)
        best = None
        for index, contributions in parts.items():
            if len(contributions) < 2:
                continue
            total = mpmath.fsum(contributions)
            size = mpmath.fsum(abs(c) for c in contributions)
            if size == 0:
                continue
            ratio = float(size / abs(total)) if total != 0 else math.inf
            if best is None or ratio > best[0]:
                best = (ratio, index, contributions, total)
    if best is None:
        return None
    ratio, index, contributions, total = best
    values = sorted((float(c) for c in contributions), key=abs, reverse=True)
    where = f"an intermediate value ({float(to_mpf(nodes[index].value)):.4g})"
    for k, v in enumerate(ev.inputs):
        if v.index == index:
            where = labels[k] if labels and k < len(labels) else f"input {k}"
    return ratio, values, float(total), where, len(nodes)


def _formula_terms(case: Case, i: int, ref: Any) -> str | None:
    """The derivative's formula for input i as SymPy writes it, and its largest terms at the point, where
    the expression is small enough to read: which terms meet and cancel."""
    with contextlib.suppress(Exception):
        import mpmath
        import sympy as sp

        from .engines import symbolic

        tr = symbolic.trace(case)
        if tr.f_ops > _MAX_NAMING_OPS:
            return None
        expr = tr.gradient[i]
        if sp.count_ops(expr) > _MAX_NAMING_OPS:
            return None
        terms = sp.Add.make_args(expr)
        if len(terms) < 2:
            return None
        point = [mpmath.mpf(float(v)) for v in ref.point]
        with mpmath.workprec(192):
            values = [(term, float(sp.lambdify([tr.symbols], term, modules="mpmath")(point))) for term in terms]
        values.sort(key=lambda tv: abs(tv[1]), reverse=True)
        shown = ", ".join(f"{sp.sstr(t)} = {v:.3g}" for t, v in values[:3])
        return (f"∂f/∂{tr.symbols[i]} = {sp.sstr(expr)} adds terms of size {abs(values[0][1]):.3g} ({shown}) that "
                f"cancel to {float(ref.exact[i]):.4g}")
    return None


def _rewrite(case: Case | None, i: int, ref: Any) -> str:
    """A rewrite that makes the cancelling terms cancel analytically: SymPy's Taylor series of f about 0
    where the input is small and f has one input, library functions where f has a known cancelling form,
    else the general advice."""
    generic = _GENERIC_REWRITE
    advice = []
    with contextlib.suppress(Exception):
        import sympy as sp

        from .engines import symbolic

        if case is None:
            return generic
        tr = symbolic.trace(case)
        if tr.f_ops > _MAX_NAMING_OPS:
            return generic
        x = tr.symbols[i]
        if any(isinstance(a, sp.sin) and (1 / a.args[0]) in sp.Mul.make_args(m) for m in sp.Add.make_args(tr.f)
               for a in sp.Mul.make_args(m)):
            advice.append("a library sinc for sin(u)/u (np.sinc(u/π))")
        if len(tr.symbols) == 1 and abs(float(ref.point[i])) < 1e-2:
            series = sp.series(tr.f, x, 0, 6).removeO()
            if series.free_symbols <= {x} and series.is_polynomial(x):
                advice.insert(0, f"near {x} = 0 the series {sp.sstr(series)} (SymPy's expansion to order 6)")
    return "; or ".join(advice) if advice else generic


def _step_vector(x: np.ndarray, c: float) -> np.ndarray:
    return c * np.maximum(np.abs(x), 1.0)


def _crossing(case: Case, ref: Any, dtype: str, scheme: str, step: float | None, order: int) -> str | None:
    """Whether the finite-difference stencil reaches past a point where a non-smooth operation switches.

    A stencil point along input i is x ± reachᵢ·eᵢ. Up to ``_AXIS_PROBES`` inputs, each is probed (the
    tape at 192 bits, its branches compared with the point's). Beyond, the cost stays a few tape
    evaluations whatever n: the whole box is probed at a few corners x + s⊙reach (all +, all −, and
    random signs with their opposites); only where a corner takes other branches is the input found,
    by halving the set of moved inputs, and named once moving it alone takes other branches too."""
    from .engines import finite

    if ref.tape is None:
        return None
    if step is None or not math.isfinite(step):
        step = finite.step_scale(scheme, dtype) if order == 1 else SECOND_DIFFERENCE_STEP(dtype)
    x = np.array([float(v) for v in ref.point])
    reach = _step_vector(x, step) * (2 if scheme == "richardson" else 1)
    one_sided = scheme == "forward" and order == 1

    def differs(shift: np.ndarray) -> bool:
        p = list(ref.point)
        for i in np.nonzero(shift)[0]:
            p[i] = p[i] + float(shift[i])
        try:
            return ref.tape(p, 192).branches != ref.branches
        except Exception:  # noqa: BLE001 - a stencil point outside the domain is not a crossing
            return False

    def found(i: int) -> str:
        from .reference import labels

        return (f"a kink in reach: the stencil crosses a kink along {labels(case)[i]}, where a non-smooth "
                f"operation switches within {float(reach[i]):.2g} of the point, so the differences mix the "
                "slopes of both sides")

    def axis(i: int, sign: float) -> np.ndarray:
        shift = np.zeros(x.size)
        shift[i] = sign * reach[i]
        return shift

    signs = (1.0,) if one_sided else (1.0, -1.0)
    if x.size <= _AXIS_PROBES:
        for i in range(x.size):
            if any(differs(axis(i, sign)) for sign in signs):
                return found(i)
        return None
    if not ref.branches:
        return None  # nothing on the tape switches anywhere: no stencil can cross a kink
    rng = np.random.default_rng(11)
    random_signs = np.where(rng.random(x.size) < 0.5, -1.0, 1.0)
    corners = [np.ones(x.size), -np.ones(x.size), random_signs, -random_signs]
    for corner in corners:
        if one_sided:
            corner = np.maximum(corner, 0.0)
        moved = np.nonzero(corner)[0]
        if moved.size == 0 or not differs(corner * reach):
            continue
        # halve the moved inputs while one half alone still takes other branches
        while moved.size > 1:
            half = moved.size // 2
            for part in (moved[:half], moved[half:]):
                shift = np.zeros(x.size)
                shift[part] = corner[part] * reach[part]
                if differs(shift):
                    moved = part
                    break
            else:
                break  # only the inputs together cross: no single stencil does
        if moved.size == 1:
            i = int(moved[0])
            if any(differs(axis(i, sign)) for sign in signs):
                return found(i)
    return None


#: up to this many inputs the stencil's crossings are probed input by input (two tape evaluations each);
#: beyond, by a few corners of the stencil's box (see ``_crossing``)
_AXIS_PROBES = 32


#: finite-difference variants tried as alternatives for an inaccurate row (order 1)
FD_VARIANTS = ("forward", "central", "richardson", "complex_step")
#: an alternative is advised only where it errs by at most this fraction of the row's error, and by at most
#: ``USEFUL`` (an error of 100% is no gradient, however much better than the row)
BETTER = 0.5
USEFUL = 0.1
#: the trials (alternatives, rescaled inputs, exact arithmetic, sampling across the step) each cost a gradient or
#: more: they run for cases with at most this many inputs
_MAX_TRIAL_INPUTS = 64


def _quiet() -> contextlib.ExitStack:
    """No floating-point warnings while a trial evaluates f where it may overflow or leave its domain."""
    stack = contextlib.ExitStack()
    stack.enter_context(np.errstate(all="ignore"))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _relative(got: np.ndarray, want: np.ndarray, size: float) -> float:
    with np.errstate(all="ignore"):
        diff = metrics._norm(np.asarray(got, dtype=np.float64).ravel() - want.ravel())
    return diff / size if math.isfinite(diff) else math.inf


def _power_of_two_scales(x: np.ndarray) -> np.ndarray:
    """Per element 2^round(log2 |xᵢ|) where 0 < |xᵢ| < 1, else 1: dividing by it brings small inputs to order 1
    exactly (a power of two changes no bit of the mantissa)."""
    with np.errstate(divide="ignore"):
        exps = np.where((x != 0) & (np.abs(x) < 1), np.round(np.log2(np.abs(x.astype(np.float64)))), 0.0)
    return np.exp2(exps)


def _fd_gradient(f: Any, x: np.ndarray, scheme: str, c: float | None = None, scales: np.ndarray | None = None
                 ) -> np.ndarray | None:
    """``scheme``'s gradient of f at x (float64), or None where the scheme does not apply; with ``scales``, of
    u ↦ f(u·scales) at x/scales, mapped back (the inputs rescaled to order 1)."""
    from .engines import Skip, finite

    try:
        with _quiet():
            if scales is None:
                return finite.differentiate(f, x, scheme, c, estimate=False).value.astype(np.float64)
            s = scales.astype(x.dtype)
            g = finite.differentiate(lambda u: f(u * s), x / s, scheme, c, estimate=False).value
            return g.astype(np.float64) / scales
    except (Skip, TypeError, ValueError, AttributeError, ArithmeticError):
        return None


def _exact_function(ref: Any) -> Any:
    """f at 192 bits minus f(x), as a float: its differences have no rounding to speak of (the values are of
    the size of the differences), so a scheme run on it errs by its truncation alone."""
    import mpmath

    point = list(ref.point)
    f0 = ref.f_mp(point)

    def f(p: np.ndarray) -> float:
        value = ref.f_mp([mpmath.mpf(float(v)) for v in np.ravel(p)]) - f0
        return float(value) if mpmath.isfinite(value) else math.nan

    return f


def _exact_resolution(exact: Any, x: np.ndarray, steps: np.ndarray, size: float) -> float:
    """How far float64 rounding of the exact function's values (f(x + hᵢeᵢ) − f(x)) moves a difference quotient,
    relative to ``size``: where curvature makes those values far larger than g·h (x² at 1e-30 with h = 5e-3), the
    exact-arithmetic trial cannot see truncation below this."""
    eps = float(np.finfo(np.float64).eps)
    parts = []
    for i in range(x.size):
        p = x.copy()
        p[i] += steps[i]
        parts.append(eps * abs(exact(p)) / steps[i])
    return metrics._norm(np.asarray(parts, dtype=np.float64)) / size


def _pole_or_domain(f: Any, x: np.ndarray, reach: np.ndarray, both: bool, names: list[str]) -> str | None:
    """Whether the stencil's reach along some input holds a pole (f changes sign through values far larger than
    at x) or leaves f's domain (f is NaN or infinite there while finite at x), from f sampled in float64."""
    x64 = x.astype(np.float64)
    with _quiet():
        f0 = float(np.real(f(x64)))
        if not math.isfinite(f0):
            return None
        for i in range(x.size):
            offsets = np.linspace(-reach[i] if both else 0.0, reach[i], 65)
            values = []
            for t in offsets:
                p = x64.copy()
                p[i] += t
                values.append(_value_or_nan(f, p))
            v = np.asarray(values)
            bad = ~np.isfinite(v)
            if bad.any():
                where = float(offsets[int(np.argmax(bad))])
                return (f"the function's domain: the stencil leaves it along {names[i]}, where f is not finite at "
                        f"x {'−' if where < 0 else '+'} {abs(where):.2g} (the step reaches {reach[i]:.2g}), so the "
                        "differences mix values from outside it")
            flips = [k for k in np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0)[0]
                     if _pole_between(f, x64, i, float(offsets[k]), float(offsets[k + 1]))]
            if flips:
                where = float(offsets[flips[0]])
                return (f"a pole in reach: the stencil crosses a pole along {names[i]}, where f changes sign through "
                        f"values of size "
                        f"{abs(v[flips[0]]):.2g} near x {'−' if where < 0 else '+'} {abs(where):.2g}, within the "
                        f"step's reach {reach[i]:.2g} (f(x) = {f0:.3g}), so the differences straddle it")
    return None


def _value_or_nan(f: Any, p: np.ndarray) -> float:
    """f(p) as a float, NaN where f raises an arithmetic or domain error there (a singular matrix's
    LinAlgError, a division by zero): like a value that is not finite."""
    try:
        return float(np.real(f(p)))
    except (ArithmeticError, ValueError):
        return math.nan


def _pole_between(f: Any, x: np.ndarray, i: int, low: float, high: float) -> bool:
    """Whether f's sign change between x + low·eᵢ and x + high·eᵢ is a pole, not a zero: bisect the change
    down to float64's resolution and look at |f| there (a zero makes it small, a pole huge)."""
    def at(t: float) -> float:
        p = x.copy()
        p[i] += t
        return _value_or_nan(f, p)

    f_low, f_high = at(low), at(high)
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        value = at(middle)
        if not math.isfinite(value):
            return True
        if np.sign(value) == np.sign(f_low):
            low, f_low = middle, value
        else:
            high, f_high = middle, value
    return min(abs(f_low), abs(f_high)) > max(abs(at(0.0)), 1e-300) * 10


def _fd_alternatives(case: Case, dtype: str, scheme: str, rel_error: float, ref_flat: np.ndarray, size: float,
                     f: Any, x: np.ndarray) -> list[tuple[float, str]]:
    """(error, text) for every other finite-difference variant, and float64 for a float32 row, that was tried
    here and errs by at most ``BETTER`` of the row's error."""
    from . import metrics
    from .engines import finite

    found = []
    for variant in FD_VARIANTS:
        if variant == scheme:
            continue
        g = _fd_gradient(f, x, variant)
        if g is not None:
            err = _relative(g, ref_flat, size)
            within = "within" if err <= metrics.tolerance("finite", variant, dtype) else "beyond"
            found.append((err, f"{variant} (error {err:.2g}, {within} its tolerance)"))
    if dtype == "float32":
        g = _fd_gradient(finite.function_of(case, "float64"), x.astype(np.float64), scheme)
        if g is not None:
            err = _relative(g, ref_flat, size)
            found.append((err, f"{scheme} in float64 (error {err:.2g})"))
    return sorted(item for item in found if item[0] <= min(BETTER * rel_error, USEFUL))


def _rounding_text(dtype: str, magnitude: float, truncation: float, model: str, explained: bool = True) -> str:
    """The rounding cause: underflow where the values are below the dtype's normal range, else rounding at the
    magnitude of the values the function computes, with what the exact-arithmetic trial left of truncation."""
    info = np.finfo(dtype)
    exact = (f"; in exact arithmetic the same differences err by only {truncation:.2g}"
             if math.isfinite(truncation) else "")
    if math.isfinite(truncation) and not explained:
        exact += (", so rounding is the cause although the values' own size does not account for it: the formula's "
                  "intermediates round at a larger size (a cancellation inside it)")
    if 0 <= magnitude < float(info.tiny):
        return (f" of values that underflow: the function's values are of size {magnitude:.3g}, below {dtype}'s "
                f"smallest normal number {float(info.tiny):.3g}, where it keeps few digits or none{exact}")
    return (f" at the magnitude of the function's values: it computes with values of size {magnitude:.3g}, and "
            f"{model}{exact}")


def fd_diagnosis(case: Case, dtype: str, scheme: str, rel_error: float, reference_flat: np.ndarray, ref: Any,
                 step: float | None = None, order: int = 1) -> str:
    """Name what limits a finite difference and advise only what was tried here and does better.

    The cause, in this order: the stencil crosses a kink (``_crossing``), a pole or leaves the
    domain (f sampled across the step's reach); the step's scale (h = c·max(|x|, 1) far larger
    than some |xᵢ|, and the same scheme on the inputs rescaled to order 1 errs by at most a tenth as
    much); else truncation or rounding, told apart by running the same scheme on f at 192 bits (minus
    f(x)): what it still errs by is truncation, the rest is rounding, quoted at the magnitude of the
    values the function computes (``Reference.magnitude``: log-sum-exp of large logits is small but
    computes with large numbers). Advice names only alternatives computed here and compared with the
    reference: other variants, float64 for a float32 row, a step from the sweep, rescaled inputs; or
    says that none does better. Order 2 (the Hessian by extrapolated second differences, the same for
    every variant) gets its own text. Raises what the case raises.
    """
    if order == 2:
        return _fd_hessian_diagnosis(case, dtype, rel_error, reference_flat, ref)
    from . import metrics
    from .engines import finite, flatten
    from .reference import labels

    eps = float(np.finfo(dtype).eps)
    f = finite.function_of(case, dtype)
    x = flatten(case.inputs, list(case.inputs)).astype(dtype)
    names = labels(case)
    size = (metrics._norm(np.asarray(reference_flat, dtype=np.float64))
            or (metrics._norm(np.asarray(ref.scale, dtype=np.float64)) if ref.scale.size else 0.0) or 1.0)
    chosen = finite.step_scale(scheme, dtype) if step is None or not math.isfinite(step) else step
    smallest = float(np.min(np.abs(x[x != 0]))) if np.any(x != 0) else 0.0
    largest = float(np.max(np.abs(x))) if x.size else 0.0
    magnitude = float(getattr(ref, "magnitude", math.nan))
    if not math.isfinite(magnitude):
        with _quiet():
            magnitude = abs(float(np.real(f(x))))
    # each component's difference rounds by about eps·|f|/hᵢ, independently: their norm against the gradient's
    rounding = eps * magnitude * float(np.linalg.norm(1.0 / (chosen * np.maximum(np.abs(x.astype(np.float64)), 1.0)))) \
        / size if x.size else eps * magnitude / chosen / size
    reach = chosen * np.maximum(np.abs(x.astype(np.float64)), 1.0) * (2 if scheme == "richardson" else 1)
    cause = _crossing(case, ref, dtype, scheme, step, order) if ref.tape is not None else None
    if cause is None and x.size <= _MAX_TRIAL_INPUTS:
        cause = _pole_or_domain(f, x, reach, scheme != "forward", names)
    rescaled = None
    if cause is None and 0 < smallest < chosen and x.size <= _MAX_TRIAL_INPUTS:
        g = _fd_gradient(f, x, scheme, chosen if scheme != "richardson" else None, _power_of_two_scales(x))
        if g is not None:
            rescaled = _relative(g, reference_flat, size)
            if rescaled <= min(0.1 * rel_error, metrics.tolerance("finite", scheme, dtype)):
                cause = (f"the step's scale: h ≈ {chosen:.2g} is far larger than the inputs (the smallest |x| is "
                         f"{smallest:.2g}), so the differences see the function at the scale of h; with the inputs "
                         f"rescaled to order 1 (steps relative to |x|) the same scheme errs by {rescaled:.2g}")
    if cause is None and 0 <= magnitude < float(np.finfo(dtype).tiny):
        cause = "rounding" + _rounding_text(dtype, magnitude, math.nan, "")
    if cause is None:
        truncation = math.nan
        if getattr(ref, "f_mp", None) is not None and ref.point and x.size <= _MAX_TRIAL_INPUTS:
            with contextlib.suppress(Exception):
                exact = _exact_function(ref)
                steps = chosen * np.maximum(np.abs(x.astype(np.float64)), 1.0)
                if _exact_resolution(exact, x.astype(np.float64), steps, size) < 0.25 * rel_error:
                    # in float64: the exact differences must not underflow or round when stored
                    g = _fd_gradient(exact, x.astype(np.float64), scheme, chosen if scheme != "richardson" else None)
                    truncation = math.inf if g is None else _relative(g, reference_flat, size)
        if (truncation >= 0.5 * rel_error) if math.isfinite(truncation) else rounding < 0.1 * rel_error:
            known = (f" (in exact arithmetic the same differences err by {truncation:.2g})"
                     if math.isfinite(truncation) else "")
            cause = (f"truncation: the function curves on a scale shorter than the step h ≈ "
                     f"{chosen * max(largest, 1.0):.2g}{known}")
        else:
            model = f"eps·{magnitude:.3g}/h ≈ {rounding:.2g} of the gradient at this step"
            cause = "rounding" + _rounding_text(dtype, magnitude, truncation, model, rounding >= 0.1 * rel_error)
    advice = []
    if rescaled is not None and rescaled <= min(BETTER * rel_error, USEFUL):
        advice.append(f"rescale the inputs to order 1 (error {rescaled:.2g})")
    if x.size <= _MAX_TRIAL_INPUTS and scheme != "complex_step":
        scales, errs = finite.sweep(case, dtype, scheme, reference_flat)
        errs = np.where(np.isfinite(errs), errs, np.inf)
        # judged by the worst of each step and its neighbours: an isolated lucky cancellation is not advice
        robust = np.array([errs[max(i - 1, 0):i + 2].max() for i in range(len(errs))])
        best = int(np.argmin(robust))
        if robust[best] <= min(BETTER * rel_error, metrics.tolerance("finite", scheme, dtype)):
            advice.append(f"a step of c ≈ {scales[best]:.2g} would do (error {robust[best]:.2g})")
    if x.size <= _MAX_TRIAL_INPUTS:
        advice += [text for _, text in _fd_alternatives(case, dtype, scheme, rel_error, reference_flat, size, f, x)]
        better = ("does better here: " + "; ".join(advice)) if advice else "no variant or step does better here"
    else:
        better = "alternatives were not tried (too many inputs)"
    where = (f"step c = {chosen:.2g}·max(|x|, 1)" if scheme != "richardson"
             else f"a median chosen step of {chosen:.2g}·max(|x|, 1)")
    return (f"{scheme} differences in {dtype} are dominated by {cause}; relative error {rel_error:.2g} at {where}; "
            f"{better}")


def _complex_step_diagnosis(case: Case, dtype: str, rel_error: float, reference_flat: np.ndarray, ref: Any) -> str:
    """The complex step where the cancellation text does not apply: its imaginary part h·g underflowing, f's
    values underflowing, or else the rounding of f's own complex evaluation; and what does better, tried here."""
    from .engines import finite, flatten

    info = np.finfo(dtype)
    f = finite.function_of(case, dtype)
    x = flatten(case.inputs, list(case.inputs)).astype(dtype)
    want = np.asarray(reference_flat, dtype=np.float64)
    size = (metrics._norm(want)
            or (metrics._norm(np.asarray(ref.scale, dtype=np.float64)) if ref.scale.size else 0.0) or 1.0)
    steps = finite.step_scale("complex_step", dtype) * np.maximum(np.abs(x.astype(np.float64)), 1.0)
    imaginary = np.abs(want) * steps
    magnitude = float(getattr(ref, "magnitude", math.nan))
    if np.any((imaginary > 0) & (imaginary < float(info.tiny))):
        i = int(np.argmin(np.where(imaginary > 0, imaginary, np.inf)))
        cause = (f"underflow of the imaginary part: Im f(x + ih) ≈ h·g is {imaginary[i]:.2g} for h = {steps[i]:.2g}, "
                 f"below {dtype}'s smallest normal number {float(info.tiny):.3g}, where it keeps few digits or none")
    elif 0 <= magnitude < float(info.tiny):
        cause = (f"values that underflow: the function's values are of size {magnitude:.3g}, below {dtype}'s smallest "
                 f"normal number {float(info.tiny):.3g}")
    else:
        cause = ("rounding of the function's own evaluation in complex arithmetic: the complex step subtracts nothing "
                 "and its truncation h²·f‴/6 is negligible at h = eps²·max(|x|, 1), so what it errs by is the rounding "
                 "of f's intermediates as it reaches the imaginary part")
    if x.size <= _MAX_TRIAL_INPUTS:
        found = [text for _, text in _fd_alternatives(case, dtype, "complex_step", rel_error, want, size, f, x)]
        better = ("does better here: " + "; ".join(found)) if found else "no variant does better here"
    else:
        better = "alternatives were not tried (too many inputs)"
    return (f"the complex step in {dtype} is dominated by {cause}; relative error {rel_error:.2g}; {better}")


def _fd_hessian_diagnosis(case: Case, dtype: str, rel_error: float, reference_flat: np.ndarray, ref: Any) -> str:
    """Order 2: extrapolated second differences (``finite.hessian_matrix``, every variant) — kink, step's
    scale, truncation or rounding (by the same scheme on f at 192 bits), and what does better, tried here."""
    from . import metrics
    from .engines import finite, flatten

    eps = float(np.finfo(dtype).eps)
    f = finite.function_of(case, dtype)
    x = flatten(case.inputs, list(case.inputs)).astype(dtype)
    want = np.asarray(reference_flat, dtype=np.float64)
    size = metrics._norm(want) or 1.0
    with _quiet():
        result = finite.hessian_matrix(f, x)
    h = float(np.median(np.diag(result.steps))) if x.size else math.nan
    magnitude = float(getattr(ref, "magnitude", math.nan))
    if not math.isfinite(magnitude):
        with _quiet():
            magnitude = abs(float(np.real(f(x))))
    rounding = eps * magnitude / h**2 / size if h > 0 else math.inf

    def hessian_error(fun: Any, point: np.ndarray, scales: np.ndarray | None = None) -> float:
        try:
            with _quiet():
                if scales is None:
                    return _relative(finite.hessian_matrix(fun, point).value, want, size)
                s = scales.astype(point.dtype)
                hu = finite.hessian_matrix(lambda u: fun(u * s), point / s).value
                return _relative(hu / np.outer(scales, scales), want, size)
        except (TypeError, ValueError, AttributeError, ArithmeticError):
            return math.inf

    cause = _crossing(case, ref, dtype, "central", None, 2) if ref.tape is not None else None
    smallest = float(np.min(np.abs(x[x != 0]))) if np.any(x != 0) else 0.0
    rescaled = math.inf
    if cause is None and 0 < smallest < 1:
        rescaled = hessian_error(f, x, _power_of_two_scales(x))
        if rescaled <= min(0.1 * rel_error, metrics.tolerance("finite", "central", dtype, order=2)):
            cause = (f"the step's scale: the second differences' steps (median {h:.2g}) are far larger than the "
                     f"inputs (the smallest |x| is {smallest:.2g}); with the inputs rescaled to order 1 they err by "
                     f"{rescaled:.2g}")
    if cause is None and 0 <= magnitude < float(np.finfo(dtype).tiny):
        cause = "rounding" + _rounding_text(dtype, magnitude, math.nan, "")
    if cause is None:
        truncation = math.nan
        if getattr(ref, "f_mp", None) is not None and ref.point:
            with contextlib.suppress(Exception):
                exact = _exact_function(ref)
                steps = h * np.ones(x.size)
                # second differences divide the float64 values' rounding by h², one h more than a gradient
                if _exact_resolution(exact, x.astype(np.float64), steps, size) / h < 0.25 * rel_error:
                    truncation = hessian_error(exact, x.astype(np.float64))
        if (truncation >= 0.5 * rel_error) if math.isfinite(truncation) else rounding < 0.1 * rel_error:
            known = f"; in exact arithmetic they err by {truncation:.2g}" if math.isfinite(truncation) else ""
            cause = (f"truncation: the function's fourth derivatives are large on the scale of the steps "
                     f"(median {h:.2g}){known}")
        else:
            cause = "rounding" + _rounding_text(dtype, magnitude, truncation, f"divided by h² ≈ {h**2:.2g}, eps·"
                                                f"{magnitude:.3g} is ≈ {rounding:.2g} of the Hessian",
                                                rounding >= 0.1 * rel_error)
    advice = []
    if rescaled <= min(BETTER * rel_error, USEFUL):
        advice.append(f"rescale the inputs to order 1 (error {rescaled:.2g})")
    if dtype == "float32":
        wide = hessian_error(finite.function_of(case, "float64"), x.astype(np.float64))
        if wide <= min(BETTER * rel_error, USEFUL):
            advice.append(f"compute in float64 (error {wide:.2g})")
    better = ("does better here: " + "; ".join(advice)) if advice else (
        "no finite-difference variant does better here (every variant computes Hessians by these differences)")
    return (f"extrapolated second differences in {dtype} are dominated by {cause}; relative error {rel_error:.2g}; "
            f"{better}")


# --------------------------------------------------------------------------- Jacobians
#: how the verdicts of a Jacobian's output rows combine: the row status is the first of these that any output
#: row has. ``undefined`` comes after every failure and before ``ok``: a Jacobian one of whose rows has no
#: derivative at the point (relu at 0 in one output) is never ``ok``, and a wrong row elsewhere still shows
JACOBIAN_ORDER = (Status.ERROR, Status.NAN, Status.INF, Status.NONE, Status.INACCURATE, Status.UNCERTAIN,
                  Status.UNDEFINED, Status.OK)
#: worst entries a Jacobian's diagnosis names
WORST_ENTRIES = 3


def _entry_errors(row: np.ndarray, ref_row: np.ndarray, scale: np.ndarray | None, dtype: str) -> np.ndarray:
    """Each entry's error in units of eps at the size it is judged at (its own, the row's norm for small ones);
    a NaN or infinite entry where the truth is finite counts as infinitely wrong."""
    eps = float(np.finfo(dtype).eps)
    with np.errstate(all="ignore"):
        diff = np.abs(row - ref_row)
        unit = np.maximum(eps * metrics.judging_sizes(ref_row, scale), float(np.finfo(dtype).smallest_subnormal))
        out = np.where(diff == 0, 0.0, diff / unit)
    return np.where(np.isfinite(row), out, np.inf)


def judge_jacobian(case: Case | None, method: str, variant: str, dtype: str, jacobian: np.ndarray, ref: Any, *,
                   step: float | None = None, unconnected: Any = ()) -> Verdict:
    """Judge an (m, N) Jacobian against ``ref`` (a :class:`diffbench.reference.JacobianReference`).

    Each output row k is judged with the scalar contract (:func:`judge`, the case being
    ``reference.component(case, k)``): sizes relative to each entry and to the row's norm for small ones, the
    hard rule, kinks, ``undefined`` and causes, all per row. The status is the first of ``JACOBIAN_ORDER`` that
    any row has; ``rel_error`` and ``max_error_eps`` are the largest over the rows that have a derivative (over
    all rows where none has); ``taylor_order`` the smallest; the cause is the worst row's. The diagnosis names
    the worst entries, "out[k] / x[i]: expected E, got G" (up to ``WORST_ENTRIES``), then the worst row's own
    diagnosis.

    ``unconnected`` names inputs for which the engine found no connection to any output (TensorFlow's None)
    and put zeros in their blocks. As for a gradient, TensorFlow's None is the row's finding: the row is
    ``none`` (cause ``no-gradient``). The diagnosis then says what the truth is: where every true entry of
    those blocks is zero (no output depends on the input), ``unconnected_gradients=ZERO`` gives the right
    Jacobian, and the verdict on the other entries follows; where one is not, it names it.
    """
    from .reference import component, labels as input_labels, output_label

    m = ref.outputs
    flat = np.asarray(jacobian, dtype=np.float64).reshape(m, -1)
    ref_flat = ref.flat
    names = input_labels(case) if case is not None else None
    shape = ref.shape
    verdicts = []
    for k, row_ref in enumerate(ref.rows):
        one = component(case, k) if case is not None and shape else case
        verdicts.append(judge(one, method, variant, dtype, flat[k], row_ref, step=step, labels=names, native=False))
    statuses = [v.status for v in verdicts]
    status = next(s for s in JACOBIAN_ORDER if s in statuses)
    judged = [v for v in verdicts if v.status != Status.UNDEFINED] or verdicts

    def largest(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return max(finite) if finite else math.nan

    rel = largest([v.rel_error for v in judged])
    max_eps = largest([v.max_error_eps for v in judged])
    attainable = largest([v.attainable_error for v in judged])
    orders = [v.taylor_order for v in judged if not math.isnan(v.taylor_order)]
    taylor = min(orders) if orders else math.nan
    worst_k = max((k for k, v in enumerate(verdicts) if v.status == status),
                  key=lambda k: (verdicts[k].max_error_eps if not math.isnan(verdicts[k].max_error_eps) else -1.0))
    worst = verdicts[worst_k]
    cause = worst.cause

    def entry_name(k: int, i: int) -> str:
        name = names[i] if names and i < len(names) else f"in[{i}]"
        return f"{output_label(shape, k) if shape else 'out'} / {name}"

    missing = _unconnected_truth(ref, case, list(unconnected or ()), flat.shape[1])
    if missing:
        shown = "; ".join(f"{entry_name(k, i)}: expected {ref_flat[k, i]:.10g}" for k, i in missing[:WORST_ENTRIES])
        return Verdict(Status.NONE, rel, max_eps,
                       f"TensorFlow returned None for {', '.join(unconnected)} (no connection to any output), but the "
                       f"true Jacobian block is not zero there ({shown}): the zeros that stand for None are wrong",
                       taylor, Cause.NO_GRADIENT, attainable)
    if unconnected:
        rest = ("every other entry is within tolerance" if status == Status.OK else
                f"the other entries are {status}" + (f": {worst.diagnosis}" if worst.diagnosis else ""))
        return Verdict(Status.NONE, rel, max_eps,
                       f"TensorFlow returned None for {', '.join(unconnected)} (no output depends on it); the true "
                       "Jacobian block is zero there, so tape.jacobian(..., unconnected_gradients="
                       f"tf.UnconnectedGradients.ZERO) gives the right Jacobian; {rest}",
                       taylor, Cause.NO_GRADIENT, attainable)
    if status == Status.OK:
        return Verdict(status, rel, max_eps, None, taylor, attainable_error=attainable)
    if status == Status.UNDEFINED:
        rows = [k for k, v in enumerate(verdicts) if v.status == Status.UNDEFINED]
        text = "; ".join(f"{output_label(shape, k)}: {verdicts[k].diagnosis}" for k in rows[:WORST_ENTRIES])
        if len(rows) > WORST_ENTRIES:
            text += f"; and {len(rows) - WORST_ENTRIES} more output rows"
        if len(rows) < m:
            others = m - len(rows)
            text += (f". The other {others} output row{'s are' if others > 1 else ' is'} within tolerance; a Jacobian "
                     "with a row that does not exist here is not ok")
        return Verdict(status, rel, max_eps, text, taylor, cause, attainable)
    bad = [k for k, v in enumerate(verdicts) if v.status not in (Status.OK, Status.UNDEFINED)]
    entries: list[tuple[float, int, int]] = []
    for k in bad:
        row_ref = ref.rows[k]
        scale = row_ref.scale if row_ref.scale.size == flat.shape[1] else None
        errs = _entry_errors(flat[k], ref_flat[k], scale, dtype)
        entries.extend((float(e), k, i) for i, e in enumerate(errs) if e > 0)
    entries.sort(key=lambda e: -e[0])
    shown = "; ".join(f"{entry_name(k, i)}: expected {ref_flat[k, i]:.10g}, got {flat[k, i]:.10g}"
                      for _, k, i in entries[:WORST_ENTRIES])
    text = f"worst entries {shown}" if shown else ""
    own = f"{output_label(shape, worst_k)}: {worst.diagnosis}" if shape and worst.diagnosis else worst.diagnosis
    if own:
        text = f"{text}. {own}" if text else own
    if len(bad) > 1:
        text += f" ({len(bad)} of {m} output rows are not ok)"
    return Verdict(status, rel, max_eps, text, taylor, cause, attainable)


def _unconnected_truth(ref: Any, case: Case | None, unconnected: list[str], n: int) -> list[tuple[int, int]]:
    """(output row, input column) of every true Jacobian entry that is not zero in the blocks of ``unconnected``."""
    if not unconnected or case is None:
        return []
    ref_flat = ref.flat
    start, out = 0, []
    for name, value in case.inputs.items():
        if name in unconnected:
            block = ref_flat[:, start:start + value.size]
            out.extend((int(k), int(start + i)) for k, i in zip(*np.nonzero(block)))
        start += value.size
    return out
