"""Error measures, statuses, the Taylor test, and diagnoses a person can act on.

Tolerances, with eps the dtype's machine epsilon (float32 1.2e-7, float64 2.2e-16):

| method                               | order 1          | order 2           |
| ------------------------------------ | ---------------- | ----------------- |
| exact (symbolic, tape, jax, torch,   | 1000·eps         | 10000·eps         |
|   finite complex_step)               | per component    | normwise          |
| finite forward                       | 100·eps^(1/2)    |                   |
| finite central                       | 100·eps^(2/3)    | 100·eps^(1/2)     |
| finite richardson                    | 100·eps^(4/5)    |                   |

**Exact methods, componentwise.** Component i passes when ``|gᵢ − rᵢ| ≤ 1000·eps·sᵢ``.
``sᵢ`` is the component's scale from the reference: ``Σ_paths Π |∂|`` along the case's
operations (the derivative with the absolute values of its summands, a running error
bound), which is |rᵢ| where nothing cancels and the size of the cancelling terms where
something does. It scales with f and with power-of-two scalings of the inputs, so no
verdict depends on the function's scale, and a component that is wrong beyond its own
rounding scale fails whatever its neighbours' size. Why 1000: an exact formula evaluated
in floating point errs by k·eps·sᵢ after k roundings; 1000 allows k up to 1000, while a
wrong gradient is off by O(sᵢ). Cancellation in the *values* the function computes
(1 − cos x near 0) is not in sᵢ: there the gradient really is wrong, whichever method
computed it, and the diagnosis says the formula is to blame.

**Finite differences, normwise** (‖g − r‖₂ against ‖r‖₂, or ‖s‖₂ where r = 0): their
error has a truncation-plus-rounding minimum of eps^(1/2) (forward), eps^(2/3)
(central), eps^(1/2) (second differences), each times the ratio of |f| to |g|·|x|;
the factor 100 leaves room for that ratio. Richardson's adaptive table
(engines/finite.py) balances at eps^(4/5) once it has eliminated the h⁴ term and usually
converges further; it is held to eps^(4/5), and its own ``error_estimate`` says how much
better it did. A gradient that misses these is ``inaccurate``.

**Trade-offs.** The scale sᵢ forgives an error of a component that is a cancellation
of larger terms (a false alarm there would fire on every correct method: they all round
at that scale); everywhere else a wrong component fails.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np

from .case import Case
from .engines import known_info

def tolerance(method: str, variant: str, dtype: str, order: int = 1) -> float:
    """The largest error, relative to the scale it is judged at, that still counts as ``ok``
    (see module docstring). Approximate engines declare their exponents (``EngineInfo``)."""
    eps = float(np.finfo(dtype).eps)
    info = known_info(method)
    if info is None or info.is_exact(variant):
        return (1e3 if order == 1 or info is None else 1e4) * eps
    if order == 2:
        return 100 * eps**info.order2_exponent
    return 100 * eps ** info.error_exponents.get(variant, 2 / 3)


def is_exact(method: str, variant: str) -> bool:
    """Whether a method evaluates an exact formula (its only error is rounding), as its engine declares."""
    info = known_info(method)
    return info is not None and info.is_exact(variant)


def _norm(values: np.ndarray) -> float:
    """‖v‖₂ without underflow or overflow: scaled by the largest entry first (1e-200² is 0 in float64)."""
    if not values.size:
        return 0.0
    with np.errstate(all="ignore"):
        largest = float(np.max(np.abs(values)))
        if largest == 0 or not np.isfinite(largest):
            return largest
        return largest * float(np.linalg.norm(values / largest))


def errors(gradient: np.ndarray, ref: np.ndarray, dtype: str, scale: np.ndarray | None = None
           ) -> tuple[float, float]:
    """(rel_error, max_error_eps) of a flat gradient against the flat reference (float64).

    rel_error = ‖g − ref‖₂ / ‖ref‖₂; where ‖ref‖₂ = 0, relative to the norm of the scale
    (the size of what cancels), and absolute only where that is 0 too.
    max_error_eps = maxᵢ |gᵢ − refᵢ| / max(eps·sᵢ, smallest subnormal), sᵢ the component's scale
    (|refᵢ| when none is given): each component's error in units of the dtype's epsilon at its own
    scale. Norms are taken without underflow (1e-200-sized gradients are not 0).
    """
    g = np.asarray(gradient, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    s = np.abs(r) if scale is None else np.maximum(np.asarray(scale, dtype=np.float64).ravel(), np.abs(r))
    eps = float(np.finfo(dtype).eps)
    with np.errstate(all="ignore"):
        diff = np.abs(g - r)
        ref_norm = judging_size(r, scale)
        rel = _norm(diff) / ref_norm if ref_norm > 0 else _norm(diff)
        # below the dtype's smallest subnormal, no error can be represented: that is the finest unit
        unit = np.maximum(eps * s, float(np.finfo(dtype).smallest_subnormal))
        per = np.where(diff == 0, 0.0, diff / unit)
        max_eps = float(np.max(per)) if per.size else 0.0
    return rel, max_eps


def judging_size(ref: np.ndarray, scale: np.ndarray | None) -> float:
    """The size a normwise error is relative to: ‖ref‖₂, or where the reference is 0 the norm of the
    scales (the size of what cancels), or 0 where there is neither (then errors are absolute)."""
    r = np.asarray(ref, dtype=np.float64).ravel()
    return _norm(r) or (0.0 if scale is None else _norm(np.asarray(scale, dtype=np.float64).ravel()))


def classify(gradient: np.ndarray, ref: np.ndarray | None, method: str, variant: str, dtype: str,
             order: int = 1, scale: np.ndarray | None = None) -> tuple[str, float, float]:
    """(status, rel_error, max_error_eps) for a computed gradient (``nan``/``inf`` before accuracy).

    Exact methods pass only if *every* component's error is within the tolerance at
    that component's own scale (componentwise: a small wrong component next to a large
    right one fails). Finite differences pass when the normwise error is within their
    error model's tolerance of ‖ref‖ (of ‖scale‖ where ref = 0). Without ``scale``
    (second derivatives), exact methods are judged normwise too.
    """
    g = np.asarray(gradient, dtype=np.float64)
    rel, max_eps = (math.nan, math.nan) if ref is None else errors(g, ref, dtype, scale)
    if np.isnan(g).any():
        return "nan", rel, max_eps
    if np.isinf(g).any():
        return "inf", rel, max_eps
    if ref is None:
        return "ok", rel, max_eps
    tol = tolerance(method, variant, dtype, order)
    eps = float(np.finfo(dtype).eps)
    if is_exact(method, variant) and scale is not None and order == 1:
        ok = max_eps <= tol / eps
    else:
        r = np.asarray(ref, dtype=np.float64).ravel()
        with np.errstate(all="ignore"):
            err = _norm(np.abs(g.ravel() - r))
        # differences see f, not the gradient's formula: relative to ‖r‖, and to the size of
        # what cancels only where the gradient itself is 0
        size = judging_size(r, scale)
        floor = float(np.finfo(dtype).smallest_subnormal)
        if size > 0:
            ok = err <= max(tol * size, floor)
        elif scale is None:
            ok = err <= tol  # no scale given at all: absolute
        else:
            ok = err <= floor  # nothing contributes to the gradient: it must be 0 to the last subnormal
    return ("ok" if ok else "inaccurate"), rel, max_eps


def taylor_order(case: Case, flat_gradient: np.ndarray, reference: Any, seed: int = 0) -> float:
    """Observed order of the Taylor remainder |f(x+hv) − f(x) − h·g·v| as h halves (NaN: not measurable).

    See :func:`taylor_test`, which also says why the order is not measurable where it is NaN.
    """
    return taylor_test(case, flat_gradient, reference, seed)[0]


def taylor_test(case: Case, flat_gradient: np.ndarray, reference: Any, seed: int = 0) -> tuple[float, str | None]:
    """(order, why not measurable) of the Taylor remainder |f(x+hv) − f(x) − h·g·v| as h halves.

    f is evaluated at 50 digits, along a seeded random unit direction v, for h = s·2⁻⁴ … s·2⁻⁹ with
    s = max(1, ‖x‖∞). A right gradient gives order ≈ 2, a wrong one ≈ 1. The order is NaN, with the
    reason, where these steps cannot tell: the function is linear along v (the true gradient leaves no
    remainder); f is not finite at a step, or the steps cross a kink, jump or pole (the reference tape
    takes other branches there, or the true gradient's own remainder does not shrink like h² over them:
    a singular matrix within reach); or the error of g is too small to show next to the curvature at
    every step while the steps could not show an error as large as the derivative itself (sin(x)/x at
    x = 1e-9: a gradient off by 357× gives order 2, because h·error is a millionth of f''·h²/2). Also
    NaN, with no reason, for a gradient that is not finite.
    """
    import mpmath

    g = np.asarray(flat_gradient, dtype=np.float64).ravel()
    if not np.all(np.isfinite(g)) or g.size == 0:
        return math.nan, None
    samples = _taylor_samples(case, reference, seed)
    if isinstance(samples, str):
        return math.nan, samples
    v, steps, f0, values, true_remainders, resolution = samples
    with mpmath.workdps(50):
        gv = mpmath.fsum(mpmath.mpf(float(gi)) * vi for gi, vi in zip(g, v))
        ref_gv = mpmath.fsum(ri * vi for ri, vi in zip(reference.exact, v))
        remainders = [abs(fx - f0 - h * gv) for h, fx in zip(steps, values)]
        if not all(mpmath.isfinite(r) for r in remainders):
            return math.nan, "f is not finite at a step"
        # the error shows once h·|(g − r)·v| reaches the true remainder at some step
        shows = any(h * abs(gv - ref_gv) >= r for h, r in zip(steps, true_remainders))
        if not shows and resolution > abs(ref_gv):
            return math.nan, (f"the steps (down to {float(steps[-1]):.2g}) see only errors above "
                              f"{float(resolution):.2g} in the directional derivative, larger than the derivative "
                              f"{float(abs(ref_gv)):.2g} itself")
        orders = [float(mpmath.log(a / b, 2)) for a, b in zip(remainders, remainders[1:]) if a > 0 and b > 0]
    return (float(np.median(orders)), None) if orders else (math.nan, "the remainders vanish")


#: the true gradient's Taylor remainder must shrink at an order within these bounds over the steps for the
#: test to read anything (O(h²), or O(h³) at an inflection); outside, the steps cross a pole or a kink
_SMOOTH_ORDERS = (1.6, 3.4)


def _taylor_samples(case: Case, reference: Any, seed: int) -> tuple[Any, ...] | str:
    """Direction, steps, 50-digit function values, the true gradient's remainders and the smallest error in the
    directional derivative the steps can show (they do not depend on the gradient under test, so they are
    computed once per case and kept on the reference); or why the test cannot read anything here."""
    import mpmath

    cache = reference.__dict__.setdefault("_taylor", {})
    if seed in cache:
        return cache[seed]
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(case.size)
    direction /= np.linalg.norm(direction)
    x = [mpmath.mpf(float(xi)) for value in case.inputs.values() for xi in value.ravel()]
    scale = max(1.0, max(abs(float(xi)) for xi in x))
    tape = getattr(reference, "tape", None)
    here = getattr(reference, "branches", None)
    result: tuple[Any, ...] | str
    with mpmath.workdps(50):
        v = [mpmath.mpf(float(vi)) for vi in direction]
        f0 = reference.f_mp(x)
        steps = [mpmath.mpf(scale) * mpmath.mpf(2) ** -k for k in range(4, 10)]
        values, crossed = [], False
        for h in steps:
            p = [xi + h * vi for xi, vi in zip(x, v)]
            if tape is not None and here:
                try:
                    run = tape(p, 192)
                    values.append(mpmath.mpf(run.value))
                    crossed = crossed or run.branches != here
                    continue
                except Exception:  # noqa: BLE001 - outside the domain: f there is NaN, as f_mp gives
                    values.append(mpmath.nan)
                    continue
            values.append(reference.f_mp(p))
        ref_gv = mpmath.fsum(ri * vi for ri, vi in zip(reference.exact, v))
        true_remainders = [abs(fx - f0 - h * ref_gv) for h, fx in zip(steps, values)]
        if not all(mpmath.isfinite(r) for r in true_remainders):
            result = "f is not finite at a step"
        elif crossed:
            result = "the steps cross a kink or a jump (the reference takes other branches there)"
        elif max(true_remainders) <= mpmath.mpf(10) ** -30 * max(1, abs(f0)):
            result = "f is linear along the direction"
        else:
            orders = [float(mpmath.log(a / b, 2)) for a, b in zip(true_remainders, true_remainders[1:])
                      if a > 0 and b > 0]
            if len(orders) < len(steps) - 1 or not all(_SMOOTH_ORDERS[0] <= o <= _SMOOTH_ORDERS[1] for o in orders):
                result = ("the steps cross a pole or a kink: the true gradient's own remainder does not shrink "
                          "like h² over them")
            else:
                resolution = min(r / h for r, h in zip(true_remainders, steps))
                result = (v, steps, f0, values, true_remainders, resolution)
    cache[seed] = result
    return result


# --------------------------------------------------------------------------- diagnoses
ADVICE = {
    "exp": "exp overflows beyond x ≈ {limit:.0f} in {dtype}; use a stable form: xp.logaddexp(0, x) for "
           "log(1 + exp(x)) (softplus), subtract the maximum before exp (log-sum-exp), or tf.math.softplus",
    "power": "a power overflowed in {dtype}; rescale the inputs or compute in log space",
    "multiply": "a product overflowed in {dtype} (beyond {max:.3g}); rescale the inputs or compute in log space",
    "square": "a square overflowed in {dtype} (beyond {max:.3g}); rescale, or use a norm that scales first",
    "log": "log of 0 or of a negative number; keep the argument positive (xp.maximum(x, tiny)) or use log1p / "
           "logaddexp for log(1 + ·)",
    "divide": "a division by zero (or 0/0); guard the denominator or rewrite the formula so it cancels",
    "sqrt": "sqrt of a negative number; the argument left the real domain",
    "true_divide": "a division by zero (or 0/0); guard the denominator or rewrite the formula so it cancels",
}


def float_events(fn: Any, *args: Any) -> list[dict[str, Any]]:
    """Run ``fn(*args)`` recording NumPy's floating-point warnings with where they happened."""
    events: list[dict[str, Any]] = []
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn", under="ignore"):
        warnings.simplefilter("always")
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - only the warnings matter here
            pass
    for w in caught:
        text = str(w.message)
        match = re.search(r"(overflow|invalid value|divide by zero) encountered in (\w+)", text)
        if not match:
            continue
        line = ""
        try:
            import linecache

            line = linecache.getline(w.filename, w.lineno).strip()
        except Exception:  # noqa: BLE001
            pass
        events.append({"kind": match.group(1), "op": match.group(2), "file": w.filename, "line": w.lineno,
                       "source": line})
    return events


def describe_point(case: Case, limit: int = 4) -> str:
    """A short text for the case's inputs: ``x = 100`` or ``x = [1, 2, …] (max |x| 88.7)``."""
    return describe_inputs(case.inputs, limit)


def describe_inputs(inputs: dict[str, np.ndarray], limit: int = 4) -> str:
    """A short text for named arrays (see :func:`describe_point`)."""
    parts = []
    for name, value in inputs.items():
        if value.size == 1:
            parts.append(f"{name} = {float(value.ravel()[0]):.6g}")
        else:
            shown = ", ".join(f"{v:.4g}" for v in value.ravel()[:limit])
            more = ", …" if value.size > limit else ""
            parts.append(f"{name} = [{shown}{more}] (max |{name}| {float(np.max(np.abs(value))):.4g})")
    return "; ".join(parts)


def overflow_diagnosis(case: Case, dtype: str, events: list[dict[str, Any]], what: str) -> str | None:
    """Name the first operation that overflowed / went invalid, where, and the stable alternative."""
    if not events:
        return None
    first = next((e for e in events if e["kind"] == "overflow"), events[0])
    info = np.finfo(dtype)
    advice = ADVICE.get(first["op"], "an intermediate value left the {dtype} range; rescale or use a stable "
                                     "formulation").format(limit=math.log(float(info.max)), dtype=dtype,
                                                           max=float(info.max))
    if "where(" in first["source"] and first["kind"] == "invalid value":
        advice = ("xp.where evaluates both branches, and reverse mode multiplies the unused branch's NaN derivative "
                  "by 0, which is NaN: keep the unused branch finite with a second where, e.g. "
                  "where(x > 0, xp.sqrt(xp.where(x > 0, x, 1.0)), 0.0)")
    where = ""
    if first["source"] and "diffbench" not in first["file"].replace("\\", "/").split("/")[-2:-1]:
        where = f" at {first['file'].split('/')[-1]}:{first['line']} (`{first['source']}`)"
    return (f"{first['kind']} in {first['op']} while evaluating the {what} in {dtype}{where}, at "
            f"{describe_point(case)}: {advice}")


def kink_diagnosis(reference: Any, flat_gradient: np.ndarray | None, method_label: str) -> str:
    """Both one-sided derivatives at each kink and which subgradient the method picked."""
    parts = []
    for kink in reference.kinks[:3]:
        picked = ""
        if flat_gradient is not None and kink.index < len(flat_gradient):
            picked = f"; {method_label} gave {float(flat_gradient[kink.index]):.6g}"
        parts.append(f"{kink.label}: left derivative {kink.left:.6g}, right derivative {kink.right:.6g}{picked}")
    more = f" (and {len(reference.kinks) - 3} more)" if len(reference.kinks) > 3 else ""
    return ("not differentiable here, the true gradient does not exist (a kink): " + "; ".join(parts) + more +
            ". Any value between the one-sided derivatives is a subgradient; move the point off the kink to compare")
