"""Error measures, statuses, the Taylor test, and diagnoses a person can act on.

**The contract.** ``ok`` is a promise about the gradient: every component that matters is within
the dtype's tolerance of the certified truth, relative to its own size. Whether an error is the
method's fault or forced by the function as written is the *cause* (diffbench.diagnose), never a
reason to call a wrong gradient ``ok``.

Tolerances, with eps the dtype's machine epsilon (float32 1.2e-7, float64 2.2e-16):

| method                               | order 1          | order 2           |
| ------------------------------------ | ---------------- | ----------------- |
| exact (symbolic, tape, jax, torch,   | 1000·eps         | 10000·eps         |
|   finite complex_step)               | per component    | normwise          |
| finite forward                       | 100·eps^(1/2)    |                   |
| finite central                       | 100·eps^(2/3)    | 100·eps^(1/2)     |
| finite richardson                    | 100·eps^(4/5)    |                   |

**The judging size of a component** (:func:`judging_sizes`) is

    wᵢ = max(|rᵢ|, ν·‖r‖₂)            where the truth rᵢ ≠ 0,
    wᵢ = max(ν·‖r‖₂, zᵢ)               where rᵢ = 0,

with ν = ``WEIGHT`` = 0.01 and zᵢ the function's own rounding scale for that component (the path-sum
scale sᵢ = Σ_paths Π|∂| of the reference; at a stationary point where every rᵢ and sᵢ is 0, for every method,
the size of the gradient one point-scale away). An exact method is ``ok`` when every |gᵢ − rᵢ| ≤ 1000·eps·wᵢ.

- *Its own size*: a component holding at least 1% of the norm is judged relative to itself, so a
  small wrong component next to a large right one fails.
- *Against the norm*: below 1% of the norm a component carries little of the gradient, and its error
  is held to what an error of 1000·eps in a 1%-component may be (10·eps·‖r‖ absolute). Why ν = 0.01:
  it is the same line as the hard rule's "component of weight" below, so every component is judged at
  its own size exactly where the hard rule watches it, and an error in the rest can move the gradient
  by at most 10·eps·‖r‖ per component; a larger ν (1: the max-norm) would let a 5%-component err by 20×
  the tolerance, a smaller one judges the sign of a 1e-16-of-the-norm component that no float64
  method can resolve.
- *A zero truth* (exactly 0, or below the reference's own noise: 0 in ``Reference.values``) has no
  size of its own: it is judged at the function's rounding scale, so 1e8·(sin²x + cos²x), whose
  derivative 1e8·(2 sin x cos x − 2 cos x sin x) is 0 and whose every float evaluation leaves
  eps·1e8, stays ``ok``.
- The path-sum scale sᵢ never widens the judging size of a nonzero truth: at sin(x)/x, x = 1e-9, the
  derivative cos(x)/x − sin(x)/x² subtracts two terms of size 1e9 to get −3.3e-10; judging at
  sᵢ ≈ 2e9 would call a gradient 357× off ``ok``. There sᵢ decides the *cause* (diagnose.py): an
  error within 1000·eps·sᵢ is what every exact method following the formula makes (conditioning,
  formula-cancellation), beyond it the method's. :func:`attainable_error` reports eps·sᵢ/wᵢ.

**Finite differences, normwise** (‖g − r‖₂ against ‖r‖₂, or the norm of the zero-truth scale where
r = 0): their error has a truncation-plus-rounding minimum of eps^(1/2) (forward), eps^(2/3)
(central), eps^(1/2) (second differences), each times the ratio of |f| to |g|·|x|; the factor 100
leaves room for that ratio. Richardson's adaptive table (engines/finite.py) balances at eps^(4/5)
once it has eliminated the h⁴ term and usually converges further; it is held to eps^(4/5), and its
own ``error_estimate`` says how much better it did.

**The hard rule** (every method, dtype and order, whatever the tolerance above allows): a component
of weight (|rᵢ| ≥ ν·‖r‖) with the wrong sign, or with relative error above ``HARD_LIMIT`` (1e-3 in
float64, 1e-2 in float32 and narrower dtypes), is never ``ok``. It binds where a normwise tolerance
is loose: float32 forward differences (3.5e-2 normwise) and float32 second differences.

**Scale invariance.** f·c scales r, sᵢ, ‖r‖ and every error by |c|; inputs·2ᵏ scale them by 2⁻ᵏ
per component: every ratio above is unchanged, so no verdict changes (short of overflow and
underflow). Errors below the dtype's smallest subnormal cannot be represented and never fail.

**Adversarial reading.** False ``ok``: (1) a zero truth next to huge cancelling terms
(1e20·x − 1e20·x) accepts errors up to 1000·eps·sᵢ: the truth is 0 and every float evaluation errs at
sᵢ, so nothing smaller can be asked; (2) a component below 1% of the norm with the wrong sign passes
when its error is under 10·eps·‖r‖, i.e. it is rounding of the gradient as a whole; (3) finite
differences may concentrate their normwise error in components of weight only up to the hard
limit. False alarm: (1) a nonzero truth that is a cancellation of far larger terms (sin(x)/x near 0,
1 − cos x, a long chain) fails every exact method: that is the contract, and the cause says that
no method following the formula does better; (2) a truth just above the reference's noise (1e-40
beside terms of size 1) is judged at its own size and fails for the same reason.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np

from .case import Case
from .engines import known_info

#: ν: a component "of weight" holds at least this fraction of the gradient's norm; a smaller one is
#: judged against this fraction of the norm (see the module docstring for the choice)
WEIGHT = 0.01


def hard_limit(dtype: str) -> float:
    """The relative error of a component of weight above which a gradient is never ``ok``: 1e-3 where
    the dtype carries at least float64's digits, 1e-2 for float32 and narrower."""
    return 1e-3 if float(np.finfo(dtype).eps) <= 1e-15 else 1e-2


def tolerance(method: str, variant: str, dtype: str, order: int = 1) -> float:
    """The largest error, relative to the size it is judged at, that still counts as ``ok``
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


def judging_sizes(ref: np.ndarray, zero_scale: np.ndarray | None = None) -> np.ndarray:
    """Per component, the size its error is judged relative to (module docstring):
    max(|rᵢ|, ν·‖r‖) where rᵢ ≠ 0, and max(ν·‖r‖, zᵢ) where rᵢ = 0, zᵢ the function's own rounding
    scale there (``zero_scale``; none given: 0, so a zero truth next to a zero gradient is absolute)."""
    r = np.abs(np.asarray(ref, dtype=np.float64).ravel())
    w = np.maximum(r, WEIGHT * _norm(r))
    if zero_scale is not None:
        z = np.abs(np.asarray(zero_scale, dtype=np.float64).ravel())
        if z.size == r.size:
            w = np.where(r == 0, np.maximum(w, z), w)
    return w


def _floor(dtype: str) -> float:
    """Below the dtype's smallest subnormal no error can be represented: the finest unit of error."""
    return float(np.finfo(dtype).smallest_subnormal)


def errors(gradient: np.ndarray, ref: np.ndarray, dtype: str, scale: np.ndarray | None = None
           ) -> tuple[float, float]:
    """(rel_error, max_error_eps) of a flat gradient against the flat reference (float64).

    rel_error = ‖g − ref‖₂ / ‖ref‖₂; where ‖ref‖₂ = 0, relative to the norm of the scale
    (the size of what cancels), and absolute only where that is 0 too.
    max_error_eps = maxᵢ |gᵢ − refᵢ| / max(eps·wᵢ, smallest subnormal), wᵢ the component's judging
    size (:func:`judging_sizes`, with ``scale`` as the size of a zero truth): each component's error
    in units of the dtype's epsilon at the size it is judged at, so an exact method is ``ok`` exactly
    when it is at most 1000. Norms are taken without underflow (1e-200-sized gradients are not 0).
    """
    g = np.asarray(gradient, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    eps = float(np.finfo(dtype).eps)
    with np.errstate(all="ignore"):
        diff = np.abs(g - r)
        ref_norm = judging_size(r, scale)
        rel = _norm(diff) / ref_norm if ref_norm > 0 else _norm(diff)
        unit = np.maximum(eps * judging_sizes(r, scale), _floor(dtype))
        per = np.where(diff == 0, 0.0, diff / unit)
        max_eps = float(np.max(per)) if per.size else 0.0
    return rel, max_eps


def judging_size(ref: np.ndarray, scale: np.ndarray | None) -> float:
    """The size a normwise error is relative to: ‖ref‖₂, or where the reference is 0 the norm of the
    scales (the size of what cancels), or 0 where there is neither (then errors are absolute)."""
    r = np.asarray(ref, dtype=np.float64).ravel()
    return _norm(r) or (0.0 if scale is None else _norm(np.asarray(scale, dtype=np.float64).ravel()))


def attainable_error(ref: np.ndarray, scale: np.ndarray | None, dtype: str) -> float:
    """The relative error an exact method following the case's formula can attain in ``dtype``:
    maxᵢ eps·sᵢ / wᵢ, sᵢ the path-sum scale and wᵢ the judging size (:func:`judging_sizes`). eps where
    nothing cancels; eps·sᵢ/|rᵢ| where the formula cancels (sin(x)/x at 1e-9: about 1e3 in float64).
    NaN without scales."""
    r = np.asarray(ref, dtype=np.float64).ravel()
    if scale is None or np.asarray(scale).size != r.size or not r.size:
        return math.nan
    s = np.maximum(np.abs(np.asarray(scale, dtype=np.float64).ravel()), np.abs(r))
    eps = float(np.finfo(dtype).eps)
    with np.errstate(all="ignore"):
        unit = np.maximum(judging_sizes(r, s), _floor(dtype) / eps)
        return float(np.max(eps * s / unit))


def violates_hard_rule(gradient: np.ndarray, ref: np.ndarray, dtype: str, radius: np.ndarray | None = None
                       ) -> np.ndarray:
    """Per component: a component of weight (|rᵢ| ≥ ν·‖r‖) whose sign is wrong or whose relative error
    exceeds :func:`hard_limit`; never ``ok``, whatever the tolerance (errors within a few of the dtype's
    smallest subnormals excepted: no value below them can be represented)."""
    g = np.asarray(gradient, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    floor = 16 * _floor(dtype)
    with np.errstate(all="ignore"):
        weight = (r != 0) & (np.abs(r) >= WEIGHT * _norm(r))
        diff = np.abs(g - r)
        if radius is not None:
            diff = np.maximum(diff - radius, 0.0)  # what the truth's own uncertainty does not explain
        sign = (np.sign(g) != np.sign(r)) & (diff > floor)
        large = diff > np.maximum(hard_limit(dtype) * np.abs(r), floor)
    return weight & (sign | large)


def classify(gradient: np.ndarray, ref: np.ndarray | None, method: str, variant: str, dtype: str,
             order: int = 1, scale: np.ndarray | None = None, radius: np.ndarray | None = None
             ) -> tuple[str, float, float]:
    """(status, rel_error, max_error_eps) for a computed gradient (``nan``/``inf`` before accuracy).

    Exact methods (order 1) pass only if *every* component's error is within the tolerance at that
    component's judging size (:func:`judging_sizes`; ``scale`` is the size of a zero truth, never a
    widening of a nonzero one). Finite differences, and Hessians, pass when the normwise error is
    within their tolerance of ‖ref‖ (of ‖scale‖ where ref = 0). Every method and order then obeys the
    hard rule (:func:`violates_hard_rule`). ``radius`` is the truth's own uncertainty per component
    (absolute; a truth made of finite differences has one): an error within it is not the method's.
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
    r = np.asarray(ref, dtype=np.float64).ravel()
    spread = None if radius is None or np.asarray(radius).size != r.size else \
        np.abs(np.asarray(radius, dtype=np.float64).ravel())
    if is_exact(method, variant) and order == 1 and (scale is not None or judging_size(r, None) > 0):
        ok = max_eps <= tol / eps
        if not ok and spread is not None:
            with np.errstate(all="ignore"):
                diff = np.abs(g.ravel() - r)
                unit = np.maximum(eps * judging_sizes(r, scale), _floor(dtype))
                ok = bool(np.all(diff <= tol / eps * unit + spread))
    else:
        with np.errstate(all="ignore"):
            diff = np.abs(g.ravel() - r)
            err = _norm(diff if spread is None else np.maximum(diff - spread, 0.0))
        # differences see f, not the gradient's formula: relative to ‖r‖, and to the size of
        # what cancels only where the gradient itself is 0
        size = judging_size(r, scale)
        floor = _floor(dtype)
        if size > 0:
            ok = err <= max(tol * size, floor)
        elif scale is None:
            ok = err <= tol  # no scale given at all: absolute
        else:
            ok = err <= floor  # nothing contributes to the gradient: it must be 0 to the last subnormal
    if ok and violates_hard_rule(g, r, dtype, spread).any():
        ok = False
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
