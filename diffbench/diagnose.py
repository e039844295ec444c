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

#: TensorFlow gradient formulas known to lose accuracy or to be wrong at some points, by xp name
KNOWN_TF_GRADIENTS = {
    "tanh": "TensorFlow computes the gradient of tanh as 1 − tanh(x)², which is 0 once tanh(x) rounds to ±1 "
            "(|x| ≳ 9 in float32, ≳ 19 in float64) although the true slope sech²(x) is still representable",
    "prod": "TensorFlow's gradient of tf.reduce_prod (xp.prod) takes a special path where an input is exactly 0, "
            "and its second derivatives there miss the terms through that input",
    "sqrt": "TensorFlow computes the gradient of sqrt as 0.5/sqrt(x), infinite at 0",
    "atan2": "TensorFlow's gradient of atan2 divides by x² + y², which underflows for tiny inputs",
}

#: what the tape differentiates, named for a person: xp name -> TensorFlow operation
TF_NAMES = {"prod": "tf.reduce_prod", "sum": "tf.reduce_sum", "max": "tf.reduce_max", "min": "tf.reduce_min",
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
        return Verdict("undefined", rel, max_eps, text)
    ref_flat = np.array([float(v) for v in np.concatenate([np.ravel(v) for v in ref.values.values()])]) \
        if ref.values else ref.flat
    certified = ref.certified if ref.certified.size == flat.size else np.ones(flat.size, dtype=bool)
    scale = ref.scale if ref.scale.size == flat.size else None
    if not metrics.is_exact(method, variant) and case is not None and scale is not None \
            and not np.any(ref_flat) and not np.any(scale):
        scale = _stationary_scale(ref, flat.size)
    status, rel, max_eps = metrics.classify(flat, ref_flat, method, variant, dtype, scale=scale)
    if status == "ok" and method == "tape" and native and scale is not None and case is not None:
        status = _native_within_rounding(case, variant, dtype, flat, ref_flat, scale)
    if status in ("ok", "inaccurate") and not certified.all():
        # judged on what is certified only: wrong there is wrong; right there says nothing of the rest
        part, _, _ = metrics.classify(flat[certified], ref_flat[certified], method, variant, dtype,
                                      scale=None if scale is None else scale[certified])
        status = "uncertain" if part == "ok" else part
    taylor = math.nan
    if status not in ("nan", "inf") and case is not None and case.func is not None:
        with contextlib.suppress(Exception):
            taylor = metrics.taylor_order(case, flat, ref)
    if status == "ok":
        return Verdict(status, rel, max_eps, None, taylor)
    if status == "uncertain":
        return Verdict(status, rel, max_eps, f"{ref.uncertain}; on the certified components the gradient is within "
                                             "tolerance, so no verdict is given", taylor)
    text = accuracy_diagnosis(case, method, variant, dtype, status, rel, ref_flat, ref, flat=flat, native=native,
                              step=step, labels=labels, taylor=taylor)
    return Verdict(status, rel, max_eps, text, taylor)


def _native_within_rounding(case: Case, variant: str, dtype: str, flat: np.ndarray, ref_flat: np.ndarray,
                            scale: np.ndarray) -> str:
    """Native code is judged at each component's own size: the scale sᵢ describes how the *xp* formula
    rounds, and the native code may compute something else. Where a component misses 1000·eps·|rᵢ|, the
    error is forgiven only as far as the same tape, differentiating the xp formula in the same dtype,
    errs there too (the cancellation is the maths', not the native code's)."""
    import dataclasses

    from .engines import get_engine

    eps = float(np.finfo(dtype).eps)
    err = np.abs(flat - ref_flat)
    strict = err <= 1e3 * eps * np.abs(ref_flat)
    if strict.all():
        return "ok"
    try:
        formula = dataclasses.replace(case, native=None)
        prepared = get_engine("tape").prepare(formula, variant if variant != "forward" else "eager", dtype, "CPU")
        from .engines import flatten

        with np.errstate(all="ignore"):
            xp_err = np.abs(flatten(prepared.gradient(), list(case.inputs)) - ref_flat)
    except Exception:  # noqa: BLE001 - no comparison possible: the native code stands on its own
        return "inaccurate"
    forgiven = err <= 16 * np.nan_to_num(xp_err, nan=0.0) + 16 * eps * scale
    return "ok" if bool(np.all(strict | forgiven)) else "inaccurate"


def _stationary_scale(ref: Any, n: int) -> np.ndarray:
    """A gradient scale for finite differences where the gradient is exactly 0 term by term (a
    stationary point with nothing cancelling): the size of the gradient one point-scale away,
    ‖∇f(x + s·u)‖ with s = max(|x|, 1) and u a fixed random unit direction (halved until f is
    defined there). Differences err in those units (h·f'', h²·f‴), whatever f's scale."""
    import mpmath

    if ref.tape is None:
        return np.zeros(n)
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
            return np.full(n, float(np.linalg.norm(g)) / math.sqrt(max(n, 1)))
    return np.zeros(n)


def _judge_hessian(case: Case | None, method: str, variant: str, dtype: str, hess: np.ndarray, ref: Any,
                   ref_hess: np.ndarray | None, native: bool) -> Verdict:
    if ref.undefined or ref.order2_undefined:
        reason = ref.undefined or ref.order2_undefined
        return Verdict("undefined", math.nan, math.nan, f"the true Hessian does not exist here: {reason}")
    if ref_hess is None or not np.all(np.isfinite(ref_hess)):
        return Verdict("undefined", math.nan, math.nan,
                       "the true Hessian does not exist here: a second derivative is not finite")
    status, rel, max_eps = metrics.classify(hess, ref_hess, method, variant, dtype, order=2)
    if status == "ok":
        return Verdict(status, rel, max_eps)
    text = "second derivatives: " + accuracy_diagnosis(case, method, variant, dtype, status, rel, ref_hess.ravel(),
                                                       ref, order=2, flat=hess.ravel(), native=native)
    return Verdict(status, rel, max_eps, text)


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
    return f"; worst at {name}: true {ref_flat[i]:.6g}, got {flat[i]:.6g}"


def _ops_text(ref: Any) -> str:
    ops = sorted(getattr(ref, "ops", set()) or set())
    return ", ".join(f"xp.{op} ({TF_NAMES.get(op, 'tf.' + op)})" for op in ops) or "its arithmetic"


def accuracy_diagnosis(case: Case | None, method: str, variant: str, dtype: str, status: str, rel: float,
                       ref_flat: np.ndarray, ref: Any, order: int = 1, flat: np.ndarray | None = None,
                       native: bool = False, step: float | None = None, labels: list[str] | None = None,
                       taylor: float = math.nan) -> str:
    """Why a row is ``inaccurate``, ``nan`` or ``inf``: the first cause that applies, in a fixed order."""
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
                import sympy as sp

                from .engines import symbolic

                tr = symbolic.trace(case)
                fn = sp.lambdify([tr.symbols], tr.gradient, modules="numpy")
                text = metrics.overflow_diagnosis(case, dtype, metrics.float_events(fn, list(x)), "symbolic gradient")
    if text is not None:
        return text
    worst = _worst(flat, ref_flat, labels, order) if flat is not None else ""
    if status in ("nan", "inf"):
        known = [KNOWN_TF_GRADIENTS[op] for op in sorted(getattr(ref, "ops", set()) or set())
                 if op in KNOWN_TF_GRADIENTS]
        if method == "tape" and known and not native:
            return f"the tape produced {status} in {dtype} although the function is finite here: {known[0]}"
        if method == "tape":
            return (f"the tape produced {status} in {dtype} although the function is finite here: an intermediate of "
                    "the backward pass left the range (e.g. exp(x)/(1+exp(x)) = inf/inf, or 0·inf); use a stable "
                    "formulation (tf.math.softplus, logaddexp)")
        if method == "finite" and case is not None and ref.tape is not None:
            crossing = _crossing(case, ref, dtype, variant, step, order)
            if crossing:
                return f"{status} in {dtype}: {crossing}"
        return f"{status} in {dtype} with no overflow in the function itself"
    order_text = "" if math.isnan(taylor) else f"; the Taylor test's order is {taylor:.2f} (2 means right, 1 wrong)"
    what = "second derivatives" if order == 2 else "gradient"
    if order == 1 and flat is not None and metrics.is_exact(method, variant) and not (method == "tape" and native):
        conditioning = _ill_conditioned(flat, ref_flat, ref, dtype)
        if conditioning:
            return conditioning
    if order == 2 and method in ("tape", "symbolic") and not native:
        known = [KNOWN_TF_GRADIENTS[op] for op in sorted(getattr(ref, "ops", set()) or set())
                 if op in KNOWN_TF_GRADIENTS and method == "tape"]
        source = "the nested tapes' second derivatives" if method == "tape" else "SymPy's second-derivative formula"
        return (f"{source}, evaluated in {dtype}, are off by a relative {rel:.2g}{worst}: "
                + (known[0] if known else "the formula cancels terms much larger than the result at this point, or "
                   "one of its operations' derivative formulas loses accuracy here (Hessians are judged normwise)"))
    if method == "tape":
        if native:
            return (f"the tape differentiates the case's own TensorFlow code, and its {what} disagrees with the "
                    f"certified reference beyond rounding (relative error {rel:.2g}){worst}: check its "
                    f"tf.custom_gradient or native implementation{order_text}")
        known = [KNOWN_TF_GRADIENTS[op] for op in sorted(getattr(ref, "ops", set()) or set())
                 if op in KNOWN_TF_GRADIENTS]
        cause = known[0] if known else ("one of TensorFlow's built-in gradient formulas loses accuracy or is wrong "
                                        f"here (the case uses {_ops_text(ref)})")
        return (f"the case has no custom gradient, so the error (relative {rel:.2g}{worst}) comes from TensorFlow's "
                f"built-in {what}: {cause}{order_text}")
    if method == "symbolic":
        return (f"SymPy's formula for the {what}, evaluated in {dtype}, loses accuracy here although the maths is "
                f"well-conditioned (relative error {rel:.2g}{worst}): the derivative SymPy wrote cancels, e.g. "
                "1 − tanh(x)² once tanh(x) rounds to 1; the tape or the complex step follow the case's own formula")
    if method == "finite" and variant != "complex_step" and case is not None:
        with contextlib.suppress(Exception):
            return fd_diagnosis(case, dtype, variant, rel, ref_flat, ref, step=step, order=order)
    return (f"{method}/{variant} is beyond tolerance (relative error {rel:.2g}{worst}) with no overflow, and rounding "
            "in the formula does not explain it; the cause is not known to diffbench")


def _ill_conditioned(flat: np.ndarray, ref_flat: np.ndarray, ref: Any, dtype: str) -> str | None:
    """The cancellation text, when rounding the function's own values in ``dtype`` moves the gradient as far
    as the method is off (measured on the reference's tape: ``Reference.rounding``)."""
    rounding = getattr(ref, "rounding", None)
    if rounding is None or rounding.size != flat.size or not flat.size:
        return None
    eps = float(np.finfo(dtype).eps)
    scale = ref.scale if ref.scale.size == flat.size else np.abs(ref_flat)
    with np.errstate(all="ignore"):
        err = np.abs(flat - ref_flat)
        explained = err <= 10 * rounding + 1e3 * eps * scale
        amplification = float(np.nanmax(rounding / np.maximum(np.abs(ref_flat), np.finfo(float).tiny)))
    if not explained.all() or amplification <= 1e3 * eps:
        return None
    return (f"cancellation in the function's own values: rounding what the formula computes in {dtype} alone moves "
            f"the gradient by up to {amplification:.2g} times its own size, so every method that follows this formula is off "
            "as much; rewrite it in a cancellation-free form (log1p, expm1, 2·sin²(x/2) for 1 − cos x)"
            + (" or compute in float64" if dtype == "float32" else ""))


def _step_vector(x: np.ndarray, c: float) -> np.ndarray:
    return c * np.maximum(np.abs(x), 1.0)


def _crossing(case: Case, ref: Any, dtype: str, scheme: str, step: float | None, order: int) -> str | None:
    """Whether the finite-difference stencil reaches past a point where a non-smooth operation switches."""
    from .engines import finite

    if ref.tape is None:
        return None
    if step is None or not math.isfinite(step):
        step = finite.step_scale(scheme, dtype) if order == 1 else SECOND_DIFFERENCE_STEP(dtype)
    x = np.array([float(v) for v in ref.point])
    reach = _step_vector(x, step) * (2 if scheme == "richardson" else 1)
    names = None
    for i in range(x.size):
        for sign in ((1,) if scheme == "forward" and order == 1 else (1, -1)):
            p = list(ref.point)
            p[i] = p[i] + sign * float(reach[i])
            try:
                branches = ref.tape(p, 192).branches
            except Exception:  # noqa: BLE001 - a stencil point outside the domain is not a crossing
                continue
            if branches != ref.branches:
                if names is None:
                    from .reference import labels

                    names = labels(case)
                return (f"the stencil crosses a kink: along {names[i]} a non-smooth operation switches within "
                        f"{float(reach[i]):.2g} of the point, so the differences mix the slopes of both sides; use a "
                        "smaller step or move the point further from the kink")
    return None


def fd_diagnosis(case: Case, dtype: str, scheme: str, rel_error: float, reference_flat: np.ndarray, ref: Any,
                 step: float | None = None, order: int = 1) -> str:
    """Say whether a kink in the stencil, rounding, the step's scale or truncation limits a finite difference,
    and whether a better step exists.

    Rounding is modelled at the magnitude of the values the function computes
    (``Reference.magnitude``, the running size of its intermediates), not at |f|:
    log-sum-exp of large logits is small but computes with large numbers.
    """
    from .engines import finite

    crossing = _crossing(case, ref, dtype, scheme, step, order)
    eps = float(np.finfo(dtype).eps)
    x = np.concatenate([v.ravel() for v in case.inputs.values()])
    largest = float(np.max(np.abs(x))) if x.size else 0.0
    magnitude = float(getattr(ref, "magnitude", math.nan))
    if not math.isfinite(magnitude):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            magnitude = abs(float(finite.function_of(case, dtype)(x.astype(dtype))))
    g_norm = float(np.linalg.norm(reference_flat)) or 1.0
    if order == 2:
        chosen = SECOND_DIFFERENCE_STEP(dtype)
        h = chosen * max(largest, 1.0)
        rounding = eps * magnitude / h**2 / g_norm
        if crossing:
            cause = crossing
        elif rounding >= 0.1 * rel_error:
            cause = (f"rounding: second differences divide by h² ≈ {h**2:.2g}, and the values the function computes "
                     f"are of size {magnitude:.3g}, so rounding contributes ≈ {rounding:.2g} of the Hessian")
        else:
            cause = (f"truncation: the function's fourth derivatives are large for h ≈ {h:.2g}; second differences "
                     "err by about h²·f⁗/12")
        return (f"second differences in {dtype} are dominated by {cause}; relative error {rel_error:.2g}. The "
                "symbolic or tape Hessian is exact up to rounding")
    chosen = finite.step_scale(scheme, dtype) if step is None or not math.isfinite(step) else step
    rounding = eps * magnitude / (chosen * max(largest, 1.0)) / g_norm
    if crossing:
        cause = crossing
    elif 0 < largest < 1e-3 * chosen:
        # h = c·max(|x|, 1) = c: the differences see f at the scale of the step, not of x
        cause = (f"the step's scale: h ≈ {chosen:.2g} is far larger than the inputs (|x| ≤ {largest:.2g}), so the "
                 "differences see the function at the scale of h; rescale the inputs to order 1")
    elif rounding >= 0.1 * rel_error:
        cause = (f"rounding: the function computes with values of size {magnitude:.3g}, large against the gradient, "
                 f"and eps·{magnitude:.3g}/h ≈ {rounding:.2g} of it at this step")
    else:
        cause = "truncation: the function curves too fast for this step"
    scales, errs = finite.sweep(case, dtype, scheme, reference_flat)
    errs = np.where(np.isfinite(errs), errs, np.inf)
    robust = np.array([errs[max(i - 1, 0):i + 2].max() for i in range(len(errs))])
    best = int(np.argmin(robust))
    if robust[best] <= metrics.tolerance("finite", scheme, dtype):
        better = f"a step of c ≈ {scales[best]:.2g} would do (error {robust[best]:.2g})"
    else:
        better = f"no step gets within tolerance here (the best, c ≈ {scales[best]:.2g}, errs by {robust[best]:.2g})"
    alternatives = [a for a in ("richardson", "complex_step") if a != scheme] + (["float64"] if dtype == "float32" else [])
    return (f"{scheme} differences in {dtype} are dominated by {cause}; relative error {rel_error:.2g} at step "
            f"c = {chosen:.2g}·max(|x|, 1); {better}. Try {' or '.join(alternatives)}")
