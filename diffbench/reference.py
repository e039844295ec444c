"""The certified high-precision ground truth every method is compared with.

**The point.** Each dtype's rows are judged at the point as that dtype holds it: the
float32 rows at the float32 rounding of the inputs (and of the case's float constants,
as a float32 program holds them), the float64 rows at the inputs themselves. Either way
the point is taken as exact binary numbers.

**The gradient** is accumulated in reverse along the case's own operations in ball
arithmetic (:mod:`diffbench.mptape`, python-flint's ``arb``), every local partial by its
own accurate formula. Every component comes out as a ball, a midpoint and a radius, and
the true component is *proven* to lie inside it. A component is *certified* when its
ball's radius is at most ``2**-CERTIFY_BITS`` of its magnitude (float64 resolves 2⁻⁵³),
or at most ``2**-SCALE_BITS`` of its scale where the component is a cancellation to
(nearly) zero. The radius is the certificate; nothing is inferred from two precisions
agreeing. The tape runs at ``PRECISIONS[0]`` bits and is run again at the next precision
only while some ball is too wide (or some switch undecided, below), within ``BUDGET_S``.
What cannot be certified within the budget is said (``Reference.uncertain``) and the rows
get status ``uncertain``. ``Reference.radius`` holds each component's radius relative to
its magnitude (to its scale for a ball that holds 0).

An operation python-flint lacks is evaluated in mpmath instead (``Reference.fallback``
names it). Its value has no proven radius, so such a gradient is certified the old way:
two working precisions that agree to ``2**-AGREE_BITS`` of the component (or
``2**-SCALE_BITS`` of its scale). The rows' ``reference`` label says which certificate
holds: ``arb-N`` (balls) or ``mpmath-2prec-N`` (agreement), N the digits carried.

**Switches decided by balls.** A non-smooth operation's switching argument (``abs``'s
argument, ``a − b`` for max/min and comparisons, the distance to the nearest integer for
floor/ceil/round, ``atan2``'s y on its cut) is non-zero when its ball excludes 0, and 0 when
its ball is the exact 0. The inputs and the case's constants are floats, that is dyadic
rationals; an argument computed from them by sums, differences, products, integer powers and
quotients is k·2^E/d with 0 < d ≤ 2^B for E and B the tape tracks, so its smallest nonzero
size is 2^(E−B) and a ball around 0 narrower than that proves it 0. A ball that holds 0
undecided is looked at again at the next precision; where even the largest precision leaves
it undecided (an argument through a transcendental function that cancels to within
2^-3072: no bound on its smallest nonzero value exists), its midpoint decides.

**The scale** of each component is ``Σ_paths Π |∂|``, the size of the quantities that
cancel in it (see :mod:`diffbench.mptape`); verdicts measure errors against it.

**Existence.** A kink or a jump can only be where a non-smooth operation switches
exactly at the point; the tape records those (abs/sign of 0, max/min/comparisons of
equal values, floor/ceil/round at an integer, atan2 on its cut). Each input such a
switch depends on is then checked from both sides: the gradient at x ± δ·eᵢ (and the
function's value) at δ and at δ·2⁻²⁰. A kink's jump stays as δ shrinks; curvature's
shrinks with δ. The same test on differences of the gradient finds points that are C¹
but not C² (order-2 rows ``undefined``). Smooth points are never tested, so no step or
threshold can call them kinks, and no size cap skips the test.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .case import Case, per_case
from .engines import check_output, output_shape, output_size, unflatten
from .errors import ReferenceUnavailable

#: working precisions in bits, raised in this order while components disagree (≈ 58 … 925 digits)
PRECISIONS = (192, 384, 768, 1536, 3072)
#: a certified component's proven radius is below 2**-CERTIFY_BITS of its magnitude (float64's rounding is 2**-53)
CERTIFY_BITS = 60
#: the mpmath fallback's certificate: two precisions agree to 2**-AGREE_BITS of the component
AGREE_BITS = 70
#: a component cancelling to (nearly) zero is certified when its error is below 2**-SCALE_BITS of its scale
SCALE_BITS = 110
#: differences below 2**-UNDERFLOW_BITS are below float64's smallest subnormal: no dtype can see them
UNDERFLOW_BITS = 1100
#: seconds spent raising the precision before the uncertified components are reported
BUDGET_S = 60.0
#: the one-sided checks use δ = 2**-DELTA_BITS·s and δ·2**-SHRINK_BITS, s the input's scale
DELTA_BITS = 40
SHRINK_BITS = 20
#: seconds spent confirming switches before the rest are reported unconfirmed
KINK_BUDGET_S = 30.0
#: a switch is looked at along ±eᵢ for this many of the inputs it depends on, and along this many
#: ± random directions over all of them
AXIS_PROBES = 8
RANDOM_PROBES = 4
#: random roundings of every intermediate value (each by up to the dtype's unit roundoff) used to
#: measure how much the formula itself amplifies rounding
ROUNDING_SAMPLES = 3

DIGITS = 50  # the precision named in reports: the first certified evaluation has at least this many


#: the certified Hessian costs 2 high-precision gradients per input (one-sided differences at two precisions):
#: for Rosenbrock on a loaded 2-core machine a few seconds with 100 inputs; past this many inputs it is not formed
MAX_HESSIAN_INPUTS = 400


@dataclass
class Kink:
    """An input along which the one-sided derivatives differ (or the function jumps)."""

    label: str
    index: int
    left: float
    right: float
    picked: float
    op: str = ""
    jump: bool = False

    def describe(self) -> str:
        if self.jump:
            return f"{self.label}: the function jumps here ({self.op})"
        return f"{self.label}: left derivative {self.left:.6g}, right derivative {self.right:.6g}"


@dataclass
class Reference:
    """The reference gradient at a case's point (in one dtype) and what is known about it."""

    values: dict[str, np.ndarray]
    exact: list[Any]
    source: str
    f_value: Any
    f_mp: Callable[[list[Any]], Any]
    undefined: str | None = None
    kinks: list[Kink] = field(default_factory=list)
    #: per component, Σ over paths of Π |partial| (float64); at least |value|
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: running magnitude of the function's value (the size of what its evaluation rounds)
    magnitude: float = float("nan")
    #: bits of the highest precision used
    bits: int = 0
    #: why some components could not be certified (None when all are)
    uncertain: str | None = None
    certified: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: why second derivatives do not exist here although the first do (C¹ but not C²)
    order2_undefined: str | None = None
    #: the array operations the case used (names of the xp namespace)
    ops: set[str] = field(default_factory=set)
    dtype: str = "float64"
    point: list[Any] = field(default_factory=list)
    #: the outcome of every branching operation at the point (see diffbench.mptape)
    branches: list[Any] = field(default_factory=list)
    #: evaluates the case on the tape: ``tape(flat_point, bits)`` -> mptape.Evaluation
    tape: Callable[..., Any] | None = None
    #: the non-smooth operations tied exactly at the point (their value there is a convention)
    ties: list[str] = field(default_factory=list)
    #: per component, the proven radius of its ball relative to its magnitude (to its scale where the ball
    #: holds 0); NaN where no ball encloses the value (the mpmath fallback, a limit taken at a tie)
    radius: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: operations evaluated by the mpmath fallback (certified by two precisions agreeing, not by balls)
    fallback: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        """What certifies this reference: ``arb-N`` (proven balls) or ``mpmath-2prec-N`` (two precisions agree)."""
        return f"{'mpmath-2prec' if self.fallback else 'arb'}-{self.digits}"

    @property
    def worst_radius(self) -> float | None:
        """The largest relative radius over the components (None where none is proven)."""
        finite = self.radius[np.isfinite(self.radius)] if self.radius.size else self.radius
        if not self.radius.size or finite.size < self.radius.size:
            return None
        return float(np.max(finite))

    @property
    def rounding(self) -> np.ndarray:
        """Per component, how far the gradient moves when every computed value is rounded in this dtype
        (the largest change over ``ROUNDING_SAMPLES`` random roundings): the formula's own conditioning.
        Computed on first use (diagnoses need it, verdicts do not)."""
        cached = self.__dict__.get("_rounding")
        if cached is None:
            if self.tape is None:
                cached = np.zeros(len(self.exact))
            else:
                cached = _rounding(self.tape, self.point, self.exact, self.dtype)
            self.__dict__["_rounding"] = cached
        return cached

    @property
    def flat(self) -> np.ndarray:
        return np.array([float(v) for v in self.exact])

    @property
    def digits(self) -> int:
        return int(self.bits * 0.30103)


def labels(case: Case) -> list[str]:
    """Human labels of every flattened input element: ``x``, ``x[2]``, ``W[0, 1]``."""
    out = []
    for name, value in case.inputs.items():
        if value.ndim == 0:
            out.append(name)
        else:
            out.extend(f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(value.shape))
    return out


def point(case: Case, dtype: str = "float64") -> list[Any]:
    """The case's point as held in ``dtype``, as exact mpmath numbers (no further rounding)."""
    import mpmath

    return [mpmath.mpf(float(np.asarray(v, dtype=dtype))) for value in case.inputs.values() for v in value.ravel()]


def _to_float(value: Any) -> float:
    import mpmath

    if not isinstance(value, mpmath.mpf) or not mpmath.isfinite(value):
        return float("nan") if not (isinstance(value, mpmath.mpf) and mpmath.isinf(value)) else float(value)
    return float(value)


def _ball_float(ball: Any) -> float:
    """The midpoint of a ball as the nearest float64 (±inf beyond its range, NaN where not finite)."""
    if not ball.is_finite():
        return float("nan") if ball.mid().is_nan() else float(ball.mid())
    return float(ball.mid())


def _finite(value: Any) -> bool:
    import mpmath

    return isinstance(value, mpmath.mpf) and bool(mpmath.isfinite(value))


@per_case
def _store(case: Case) -> dict[str, Any]:
    return {}


def reference(case: Case, dtype: str = "float64") -> Reference:
    """The certified reference gradient of ``case`` at its point as ``dtype`` holds it (cached).

    Raises the case's own exception (or TypeError/ValueError for a complex or
    non-scalar result) when the case fails to evaluate, and ValueError for a case that returns an array
    (its derivative is a Jacobian: :func:`reference_jacobian`).
    """
    if output_shape(case):
        raise ValueError(f"case {case.name!r} returns an array of shape {output_shape(case)}: its derivative is a "
                         "Jacobian; use reference_jacobian(case, dtype)")
    store = _store(case)
    if dtype not in store:
        try:
            store[dtype] = (True, _reference(case, dtype))
        except Exception as exc:  # noqa: BLE001 - remembered so a failing case fails once
            store[dtype] = (False, exc)
    ok, value = store[dtype]
    if not ok:
        raise value
    return value


def _tape_function(case: Case, dtype: str = "float64") -> Callable[[list[Any], int], Any]:
    from . import mptape

    shapes = [tuple(v.shape) for v in case.inputs.values()]

    def run(flat: list[Any], prec: int, perturb: float = 0.0, seed: int = 0) -> Any:
        return mptape.evaluate(case.func, shapes, flat, prec,
                               check=lambda out: check_output(case, out, "mpmath namespace"), perturb=perturb,
                               seed=seed, constants=dtype)

    return run


def _value_function(run: Callable[[list[Any], int], Any], prec: int) -> Callable[[list[Any]], Any]:
    """f alone at ``prec`` bits (NaN where the case leaves its domain), for the Taylor test."""
    import mpmath

    def f(flat: list[Any]) -> Any:
        try:
            return run(flat, prec).value
        except (ZeroDivisionError, ValueError, OverflowError):
            return mpmath.nan

    return f


def _certify(a: list[Any], b: list[Any], scale: list[Any], bits_a: int, bits_b: int) -> list[bool]:
    """Which components of the higher-precision ``b`` are certified by their distance to ``a``."""
    import mpmath

    out = []
    for va, vb, c in zip(a, b, scale):
        if not (_finite(va) and _finite(vb)):
            out.append(bool(va == vb) or (mpmath.isinf(va) and mpmath.isinf(vb) and va == vb))
            continue
        # the lower precision must already agree: then the higher one, whose rounding is
        # 2^(bits_b − bits_a) times smaller, is at least as good
        distance = abs(va - vb)
        out.append(bool(distance <= mpmath.ldexp(abs(vb), -AGREE_BITS)
                        or distance <= mpmath.ldexp(abs(c), -SCALE_BITS)
                        or distance <= mpmath.ldexp(1, -UNDERFLOW_BITS)))
    return out


def _ball_certify(ev: Any) -> tuple[list[bool], np.ndarray]:
    """Which components' balls are narrow enough, and each ball's radius relative to its size."""
    from flint import arb

    relative, absolute, floor = arb(2) ** -CERTIFY_BITS, arb(2) ** -SCALE_BITS, arb(2) ** -UNDERFLOW_BITS
    certified, radius = [], np.zeros(len(ev.gradient_balls))
    for i, (g, s) in enumerate(zip(ev.gradient_balls, ev.scale_balls)):
        if not g.is_finite():
            certified.append(False)
            radius[i] = np.nan
            continue
        rad = g.rad()
        if rad.is_zero():
            certified.append(True)
            continue
        mid = abs(g.mid())
        scale = s.mid()
        if g.contains(0):
            # a ball around 0 is a cancellation to (nearly) 0: it is read as 0 once the precision is past the
            # first one and the ball is narrow at its scale; a smaller true value shows at the higher precision
            certified.append(bool(ev.prec > PRECISIONS[0] and (rad <= absolute * scale or rad <= floor)))
        else:
            certified.append(bool(rad <= relative * mid or rad <= floor))
        size = mid if not g.contains(0) else scale
        radius[i] = float(rad / size) if size > 0 else np.inf
    return certified, radius


def _noise(high: Any, bits: int) -> list[bool]:
    """Components whose value is below the rounding noise of their own scale at ``bits`` (a cancellation to 0)."""
    import mpmath

    if not high.fallback:
        # a ball that holds 0 cannot tell its component from 0
        return [bool(g.is_finite() and not g.is_zero() and g.contains(0)) for g in high.gradient_balls]
    return [bool(_finite(b) and b != 0 and abs(b) <= mpmath.ldexp(abs(c), 16 - bits))
            for b, c in zip(high.gradient, high.scale)]


def _resolved(certified: list[bool], high: Any, bits: int, dtype: str) -> list[bool]:
    """``certified`` less the components that cancel to within rounding noise of their scale at ``bits``
    while that noise is still above the dtype's smallest subnormal: such a value is not shown to be 0 yet,
    and a truth hidden beneath far larger terms ((1e120·x + x) − 1e120·x has ∂f/∂x = 1, lost to 0 at 384
    bits) shows at a higher precision. The precision is raised for them within the time budget; zeros
    without a path (scale 0) and noise below every representable value need nothing more."""
    import mpmath

    floor = mpmath.mpf(float(np.finfo(dtype).smallest_subnormal))
    return [c and not (_finite(b) and s != 0 and abs(b) <= mpmath.ldexp(abs(s), 16 - bits)
                       and mpmath.ldexp(abs(s), 16 - bits) >= floor)
            for c, b, s in zip(certified, high.gradient, high.scale)]


def _resolved(certified: list[bool], high: Any, bits: int, dtype: str) -> list[bool]:
    """``certified`` less the components whose ball still holds 0 while its radius is above the dtype's
    smallest subnormal: such a value is not shown to be 0 yet, and a truth hidden beneath far larger terms
    ((1e120·x + x) − 1e120·x has ∂f/∂x = 1, inside a ball around 0 at 384 bits) shows at a higher precision.
    The precision is raised for them within the time budget; zeros without a path (scale 0) and balls
    narrower than every representable value need nothing more. With the mpmath fallback (no balls), the
    same holds for a value within rounding noise of its scale."""
    import mpmath

    floor = float(np.finfo(dtype).smallest_subnormal)
    if not high.fallback:
        out = []
        for c, g, s in zip(certified, high.gradient_balls, high.scale_balls):
            hidden = bool(g.is_finite() and g.contains(0) and not s.is_zero() and float(g.rad()) >= floor)
            out.append(c and not hidden)
        return out
    return [c and not (_finite(b) and s != 0 and abs(b) <= mpmath.ldexp(abs(s), 16 - bits)
                       and mpmath.ldexp(abs(s), 16 - bits) >= floor)
            for c, b, s in zip(certified, high.gradient, high.scale)]


def _rounding(run: Callable[..., Any], x: list[Any], exact: list[Any], dtype: str) -> np.ndarray:
    """Largest change of each component over random roundings of every computed value in ``dtype``."""
    import mpmath

    unit = float(np.finfo(dtype).eps) / 2
    worst = np.zeros(len(x))
    for seed in range(ROUNDING_SAMPLES):
        try:
            sample = run(x, PRECISIONS[0], perturb=unit, seed=seed + 1)
        except Exception:  # noqa: BLE001 - a perturbed value left the domain: no estimate from this sample
            continue
        with mpmath.workprec(PRECISIONS[0]):
            moved = np.array([_to_float(abs(a - b)) for a, b in zip(sample.gradient, exact)])
        worst = np.fmax(worst, np.where(np.isfinite(moved), moved, 0.0))
    return worst


@contextlib.contextmanager
def _no_gc() -> Any:
    """The cyclic collector paused: a reference holds millions of tape objects that die together, and the
    collector's passes over them would cost more than the evaluation."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _reference(case: Case, dtype: str) -> Reference:
    with _no_gc():
        return _reference_now(case, dtype)


def _reference_now(case: Case, dtype: str) -> Reference:
    import mpmath

    x = point(case, dtype)
    names = labels(case)
    run = _tape_function(case, dtype)
    start = time.perf_counter()
    high = run(x, PRECISIONS[0])
    low = high
    bits = PRECISIONS[0]
    certified, radius = _ball_certify(high)
    if high.fallback:
        # no proven radius for what mpmath computed: two precisions must agree instead
        low, high = high, run(x, PRECISIONS[1])
        bits = PRECISIONS[1]
        certified = _certify(low.gradient, high.gradient, high.scale, PRECISIONS[0], bits)
    for nxt in [p for p in PRECISIONS if p > bits]:
        if (all(_resolved(certified, high, bits, dtype)) and not high.unresolved) or \
                time.perf_counter() - start > BUDGET_S:
            break
        low, high = high, run(x, nxt)
        if high.fallback:
            certified = _certify(low.gradient, high.gradient, high.scale, bits, nxt)
        else:
            certified, radius = _ball_certify(high)
        bits = nxt
    if high.fallback:
        radius = np.full(len(x), np.nan)
    exact = list(high.gradient)
    scale = np.array([_ball_float(c) for c in high.scale_balls]) if not high.fallback else \
        np.array([_to_float(abs(c)) for c in high.scale])
    ref = Reference(values={}, exact=exact, source="arb-tape", f_value=high.value,
                    f_mp=_value_function(run, PRECISIONS[0]), scale=scale, magnitude=_to_float(abs(high.magnitude)),
                    bits=bits, certified=np.array(certified, dtype=bool), ops=set(high.ops), dtype=dtype, point=x,
                    branches=list(high.branches), tape=run, radius=radius, fallback=set(high.fallback))
    if high.fallback:
        flat = np.array([_to_float(v) if not n else 0.0 for v, n in zip(exact, _noise(high, bits))])
    else:
        flat = np.array([_ball_float(g) if not n else 0.0 for g, n in zip(high.gradient_balls, _noise(high, bits))])
    ref.values = unflatten(flat, case.inputs)
    f_value = high.value
    bad = [i for i, v in enumerate(exact) if not _finite(v)]
    if not _finite(f_value):
        # a value outside the domain in a branch that where() discards does not reach f: only what does counts
        what = high.domain[0] if high.domain else "an overflow or an infinite value"
        ref.undefined = (f"the function is not real or not finite at this point ({what}; value "
                         f"{mpmath.nstr(f_value, 6)})")
        return ref
    if bad:
        more = f"; also {len(bad) - 1} more inputs" if len(bad) > 1 else ""
        negative_base = _negative_base(high, names)
        if negative_base is not None:
            kind = negative_base
        elif mpmath.isnan(exact[bad[0]]):
            # an infinite local derivative times a zero one: √ or a fractional power at 0 inside (‖x‖ at 0)
            kind = "0·∞: a square root or fractional power of 0 inside, a cone point such as ‖x‖ at 0"
        else:
            kind = "a singularity"
        ref.undefined = f"the derivative is not finite at {names[bad[0]]} = {float(x[bad[0]]):.6g} ({kind}{more})"
        return ref
    if not all(certified):
        missing = [names[i] for i, c in enumerate(certified) if not c]
        how = ("its value still changed when the precision was raised" if high.fallback else
               "its ball was still wider than 2^-" + str(CERTIFY_BITS) + " of its size")
        ref.uncertain = (f"the reference could not be certified for {', '.join(missing[:3])}"
                         f"{' and ' + str(len(missing) - 3) + ' more' if len(missing) > 3 else ''}: {how} at "
                         f"{int(bits * 0.30103)} digits (within {BUDGET_S:g} s)")
    if high.switches:
        ref.ties = sorted({switch.op for switch in high.switches})
        _existence(ref, run, high, names)
    return ref


def _negative_base(ev: Any, names: list[str]) -> str | None:
    """The text for x**y with a negative base and a varying exponent (∂/∂y needs log of the base), if any."""
    for record in getattr(ev, "domain_records", []):
        if record.base is None:
            continue
        index = {v.index: i for i, v in enumerate(ev.inputs)}
        base = getattr(record.base, "index", None)
        exponent = getattr(record.exponent, "index", None)
        base_name = names[index[base]] if base in index else "the base"
        exponent_name = names[index[exponent]] if exponent in index else "the exponent"
        shown = base_name if base in index else "a"
        power = f"{base_name}**{exponent_name}" if base in index and exponent in index else "the power"
        return (f"log of the negative base {shown} = {record.value:g}: {power} is real only for integer "
                f"{exponent_name} here")
    return None


# --------------------------------------------------------------------------- existence
def _input_scale(x: list[Any], i: int) -> Any:
    import mpmath

    if x[i] != 0:
        return abs(x[i])
    largest = max((abs(v) for v in x), default=mpmath.mpf(0))
    return largest if largest != 0 else mpmath.mpf(1)


def _probe_directions(x: list[Any], candidates: list[int], seed: int = 0) -> list[tuple[str, list[Any]]]:
    """Directions to look at a switch from: ±eᵢ for the first inputs it depends on, and ± random
    directions over all of them (a kink may only show off the axes, e.g. |x₀ + x₁| − |x₀| − |x₁|)."""
    import mpmath

    rng = np.random.default_rng(seed)
    n = len(x)
    out: list[tuple[str, list[Any]]] = []
    for i in candidates[:AXIS_PROBES]:
        e = [mpmath.mpf(0)] * n
        e[i] = mpmath.mpf(1)
        out += [(f"+{i}", e), (f"-{i}", [-v for v in e])]
    for k in range(RANDOM_PROBES):
        v = [mpmath.mpf(0)] * n
        for i in candidates:
            v[i] = mpmath.mpf(float(rng.standard_normal()))
        out += [(f"+r{k}", v), (f"-r{k}", [-c for c in v])]
    return out


def _same_branches(probe: list[Any], point: list[Any], tied: set[int]) -> bool:
    """Whether a probe takes the point's branches everywhere but at the switches tied at the point."""
    return len(probe) == len(point) and all(a == b for k, (a, b) in enumerate(zip(probe, point)) if k not in tied)


def _existence(ref: Reference, run: Callable[[list[Any], int], Any], base: Any, names: list[str]) -> None:
    """Look at the point from several sides where a non-smooth operation switches exactly there.

    Probe points p = x + δ·s∘w (s the inputs' scales, w a direction) are taken where no switch lies
    between the point and p (p takes the point's branches everywhere but at the tied switches). Across the probes:
    f's values differ by more than curvature explains (a jump), the gradients do (a kink), or the
    Hessian-vector products do (C¹ but not C²). "More than curvature explains": the spread persists
    when δ shrinks by 2^SHRINK_BITS, while curvature's shrinks with δ. Where the point is none of
    these, the tape's value at the tie follows a convention (max takes its first argument, sign(0) is
    0), so the reference becomes the limit of the gradients around it.
    """
    import mpmath

    x = ref.point
    candidates: list[int] = []
    for switch in base.switches:
        if switch.argument is None:
            continue
        for i in base.dependence(switch.argument):
            if i not in candidates:
                candidates.append(i)
    if not candidates:
        return
    start = time.perf_counter()
    scales = [_input_scale(x, i) for i in range(len(x))]
    directions = _probe_directions(x, candidates)
    chosen = None
    tied = {switch.position for switch in base.switches}
    # the largest step at which no other switch lies between the point and any probe; a switch closer
    # than the working precision can resolve is looked for at a higher one
    for prec in [p for p in PRECISIONS if p >= PRECISIONS[1]]:
        with mpmath.workprec(prec):
            steps = [mpmath.ldexp(1, -b) for b in range(DELTA_BITS, prec // 3 - SHRINK_BITS + 1, SHRINK_BITS // 2)]

            def probe(w: list[Any], d: Any, prec: int = prec) -> Any:
                return run([xi + d * si * wi for xi, si, wi in zip(x, scales, w)], prec)

            for d in steps:
                if time.perf_counter() - start > KINK_BUDGET_S:
                    break
                if all(_same_branches(probe(w, d).branches, base.branches, tied) and
                       _same_branches(probe(w, 2 * d).branches, base.branches, tied) for _, w in directions):
                    chosen = d
                    break
        if chosen is not None or time.perf_counter() - start > KINK_BUDGET_S:
            break
    if chosen is None:
        ref.uncertain = (f"a non-smooth operation switches exactly at this point for "
                         f"{', '.join(names[i] for i in candidates[:3])}, and another switch lies closer to it than "
                         f"{PRECISIONS[-1]} bits resolve (or the search ran past {KINK_BUDGET_S:g} s): whether the "
                         "gradient exists here could not be decided")
        ref.certified = np.zeros(len(x), dtype=bool)
        return
    with mpmath.workprec(prec):
        def at(w: list[Any], d: Any) -> Any:
            return run([xi + d * si * wi for xi, si, wi in zip(x, scales, w)], prec)

        here = run(x, prec)
        deltas = [chosen, chosen * mpmath.ldexp(1, -SHRINK_BITS), chosen * mpmath.ldexp(1, -2 * SHRINK_BITS)]
        pairs = [(d, at) for d in deltas[:2]]
        samples = [{label: at(w, d) for label, w in directions} for d in deltas]
        n = len(x)

        def spread(values: list[Any]) -> Any:
            return max(values) - min(values)

        def persists(wide: Any, narrow: Any, floor: Any) -> bool:
            return bool(narrow > floor and narrow >= wide / 2)

        # a jump in f, also one where only the point itself differs (sign(x)² at 0): what is left of
        # f(p) − f(x) once the probe's own slope is taken off shrinks like δ² where f is continuous
        def residual(d: Any, sample: dict[str, Any]) -> Any:
            worst = mpmath.mpf(0)
            for label, w in directions:
                e = sample[label]
                slope = mpmath.fsum(g * si * wi for g, si, wi in zip(e.gradient, scales, w))
                worst = max(worst, abs(e.value - here.value - d * slope))
            return worst

        f_residuals = [residual(d, sample) for d, sample in zip(deltas, samples)]
        mag = max(abs(base.magnitude), abs(here.magnitude), mpmath.ldexp(1, -1000))
        if persists(f_residuals[0], f_residuals[1], mpmath.ldexp(mag, 24 - prec)):
            ops = sorted({sw.op for sw in base.switches})
            ref.kinks = [Kink(names[i], i, float("nan"), float("nan"), _to_float(base.gradient[i]), "/".join(ops), True)
                         for i in candidates[:3]]
            ref.undefined = ("not differentiable here (the function jumps): a " + "/".join(ops) + " switches exactly "
                             "at this point and f around it does not tend to f at it")
            return
        # a kink: the gradient differs between sides
        kinked = []
        for j in range(n):
            wide = spread([e.gradient[j] for e in samples[0].values()])
            narrow_values = [e.gradient[j] for e in samples[1].values()]
            narrow = spread(narrow_values)
            # only rounding bounds it from below: curvature is told apart by shrinking with δ
            noise = mpmath.ldexp(max(abs(e.scale[j]) for e in samples[1].values()), 24 - prec)
            if persists(wide, narrow, noise):
                kinked.append(j)
        if kinked:
            ref.kinks = []
            for j in kinked[:3]:
                plus, minus = samples[1].get(f"+{j}"), samples[1].get(f"-{j}")
                if plus is not None and minus is not None:
                    left, right = _to_float(minus.gradient[j]), _to_float(plus.gradient[j])
                else:
                    values = [e.gradient[j] for e in samples[1].values()]
                    left, right = _to_float(min(values)), _to_float(max(values))
                ref.kinks.append(Kink(names[j], j, left, right, _to_float(base.gradient[j]),
                                      "/".join(sorted({sw.op for sw in base.switches}))))
            ref.undefined = "not differentiable here (a kink): " + "; ".join(k.describe() for k in ref.kinks)
            return
        # differentiable: the value at the tie is the limit of the gradients around it. Their mean over the
        # probes is g(x) + a·δ + O(δ²) (|x|-like curvature is not symmetric), so it is extrapolated to δ = 0
        # linearly, from two pairs of steps that must agree
        means = [[mpmath.fsum(e.gradient[j] for e in sample.values()) / len(directions) for j in range(n)]
                 for sample in samples]

        def extrapolate(a: int, b: int) -> list[Any]:
            return [(means[b][j] * deltas[a] - means[a][j] * deltas[b]) / (deltas[a] - deltas[b]) for j in range(n)]

        limit, limit_wide = extrapolate(1, 2), extrapolate(0, 1)
        noise = [max(abs(e.scale[j]) for sample in samples for e in sample.values()) for j in range(n)]
        # the narrow extrapolation errs by about the two extrapolations' difference times δ₂/δ₀ (their
        # second-order remainders scale with the steps): a limit no larger than that is 0 as far as it shows
        gap = [abs(limit[j] - limit_wide[j]) for j in range(n)]
        residual = [g * deltas[2] / deltas[0] for g in gap]
        limit = [mpmath.mpf(0) if abs(v) <= mpmath.ldexp(c, 24 - prec) or abs(v) <= 4 * r else v
                 for v, c, r in zip(limit, noise, residual)]
        # the scale is what a method rounds at the point itself (its branch), not what the probes see
        scale = [max(abs(base.scale[j]), abs(limit[j])) for j in range(n)]
        ref.exact = limit
        ref.radius = np.full(n, np.nan)  # a limit of balls around the point, not a ball
        ref.scale = np.array([_to_float(c) for c in scale])
        ref.values = unflatten(np.array([_to_float(v) for v in limit]), ref.values)
        # the two extrapolations differ by second-order remainders; the limit did not settle when they differ
        # by more than a small part of the component's size, or (for a component 0 at the point, whose size
        # says nothing) of the first-order change the extrapolation took off across the probes
        removed = [abs(means[0][j] - means[1][j]) for j in range(n)]
        moved = [j for j in range(n) if gap[j] > max(mpmath.ldexp(abs(limit[j]) + scale[j], -60), mpmath.ldexp(removed[j], -20),
                       mpmath.ldexp(1, -UNDERFLOW_BITS))]
        if moved:
            ref.uncertain = (f"the gradient at this tie is the limit of the gradients around it, and for "
                             f"{', '.join(names[j] for j in moved[:3])} that limit did not settle")
            ref.certified = np.array([j not in moved for j in range(n)], dtype=bool)
        # C¹ but not C²: Hessian-vector products on different sides
        probe = [mpmath.mpf(float(v)) for v in np.random.default_rng(1).standard_normal(n)]
        hv_spreads = []
        for (d, _), sample in zip(pairs, samples[:2]):
            eps = d * mpmath.ldexp(1, -SHRINK_BITS)
            products = []
            for label, w in directions:
                centre = [xi + d * si * wi for xi, si, wi in zip(x, scales, w)]
                up = run([c + eps * si * u for c, si, u in zip(centre, scales, probe)], prec)
                down = run([c - eps * si * u for c, si, u in zip(centre, scales, probe)], prec)
                products.append([(a - b) / (2 * eps) for a, b in zip(up.gradient, down.gradient)])
            worst, size, floor = mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(0)
            for j in range(n):
                column = [p[j] for p in products]
                worst = max(worst, spread(column))
                size = max(size, max(abs(v) for v in column))
                floor = max(floor, mpmath.ldexp(scale[j], 24 - prec) / eps)
            hv_spreads.append((worst, size, floor))
        (w0, _, _), (w1, _, floor1) = hv_spreads
        if persists(w0, w1, floor1):
            ref.order2_undefined = ("the first derivatives exist but the second do not (the function is C¹, not C², "
                                    "here): second derivatives differ from one side of a " +
                                    "/".join(sorted({sw.op for sw in base.switches})) + " to the other")


# --------------------------------------------------------------------------- Hessian
def reference_hessian(case: Case, dtype: str = "float64", budget_s: float | None = None) -> np.ndarray:
    """The certified reference Hessian (N, N) rounded to float64 (cached per case and dtype).

    With ``budget_s``, one high-precision gradient is timed first and ReferenceUnavailable raised, without
    forming the Hessian, when the 2N + 2 it needs would take longer than ``budget_s`` seconds.

    One-sided differences of the accumulated gradient at ``PRECISIONS[1]`` bits with
    δ = 2^(−bits/2)·s (truncation and rounding both ≈ 2^(−bits/2), far below float64's
    2^-53), certified by the same at ``PRECISIONS[0]`` bits (each difference on a side whose
    stencil keeps the point's branches; a switch closer than the step on both sides raises
    the precision). Raises ReferenceUnavailable when the two disagree,
    and the case's own exception when it fails to evaluate.
    """
    store = _store(case)
    key = ("hessian", dtype)
    if key not in store:
        try:
            store[key] = (True, _reference_hessian(case, dtype, budget_s))
        except Exception as exc:  # noqa: BLE001
            store[key] = (False, exc)
    ok, value = store[key]
    if not ok:
        raise value
    return value.copy()


def _hessian_at(run: Callable[[list[Any], int], Any], x: list[Any], prec: int,
                forward: bool = False) -> list[list[Any]]:
    """Differences of the accumulated gradient, column by column: central where the stencil stays on the
    point's branches, otherwise one-sided on a side that does (second order: (3g(x) − 4g(x∓d) + g(x∓2d))/2d),
    at a higher precision (so a smaller step) where a switch lies closer than the step on both sides."""
    import mpmath

    n = len(x)
    columns = []
    here = {prec: run(x, prec)}  # the point itself, once per precision
    for j in range(n):
        column = None
        for bits in [p for p in (prec, 2 * prec, 4 * prec, 8 * prec, 16 * prec) if p <= 4 * PRECISIONS[-1]]:
            if bits not in here:
                here[bits] = run(x, bits)
            column = _hessian_column(run, x, j, bits, here[bits], forward)
            if column is not None:
                break
        if column is None:
            raise ReferenceUnavailable(f"a switch lies closer to the point than any step along input {j} that "
                                       f"{16 * prec} bits resolve: the second derivatives cannot be certified")
        columns.append(column)
    with mpmath.workprec(prec):
        # symmetrise: H[i][j] = ∂²f/∂xᵢ∂xⱼ, averaged over both orders of differentiation
        return [[(columns[j][i] + columns[i][j]) / 2 for j in range(n)] for i in range(n)]


def _hessian_column(run: Callable[[list[Any], int], Any], x: list[Any], j: int, prec: int,
                    here: Any, forward: bool = False) -> list[Any] | None:
    """Column j of the Hessian at ``prec`` bits (``here``: the tape at x), or None where both sides of the
    stencil cross a switch."""
    import mpmath

    with mpmath.workprec(prec):
        d = mpmath.ldexp(_input_scale(x, j), -(prec // 3))

        def shifted(t: Any) -> Any:
            p = list(x)
            p[j] += t
            return run(p, prec)

        if forward:
            # one-sided, with a step so small (2^(−bits/2)) that its O(d) truncation is as small as the
            # central difference's O(d²) at the other precision: one gradient per column instead of two
            d = mpmath.ldexp(_input_scale(x, j), -(prec // 2))
            for sign in (1, -1):
                near = shifted(sign * d)
                if not here.branches or near.branches == here.branches:
                    return [sign * (b - a) / d for a, b in zip(here.gradient, near.gradient)]
            if here.switches:
                up, down = shifted(d), shifted(-d)
                return [(a - b) / (2 * d) for a, b in zip(up.gradient, down.gradient)]
            return None
        up, down = shifted(d), shifted(-d)
        if not here.branches or (up.branches == here.branches and down.branches == here.branches):
            return [(a - b) / (2 * d) for a, b in zip(up.gradient, down.gradient)]
        for sign, near in ((1, up), (-1, down)):
            far = shifted(2 * sign * d)
            if near.branches == here.branches and far.branches == here.branches:
                return [sign * (4 * b - 3 * a - c) / (2 * d) for a, b, c in zip(here.gradient, near.gradient,
                                                                              far.gradient)]
        if here.switches:
            # the point itself is a tie: no side keeps its branches; the existence test decides about it
            return [(a - b) / (2 * d) for a, b in zip(up.gradient, down.gradient)]
        return None


def known_hessians(case: Case) -> dict[str, tuple[bool, Any]]:
    """The reference Hessians already settled for ``case``, by dtype: (True, the matrix) or (False, why there is
    none, as text), to hand to another process measuring the same case (:func:`remember_hessian`)."""
    return {key[1]: (ok, value if ok else str(value)) for key, (ok, value) in _store(case).items()
            if isinstance(key, tuple) and key[0] == "hessian"}


def remember_hessian(case: Case, dtype: str, ok: bool, value: Any) -> None:
    """Take the reference Hessian of ``case`` in ``dtype`` as settled elsewhere: ``value`` is the matrix, or (``ok``
    false) the reason there is none, raised as ReferenceUnavailable by :func:`reference_hessian`."""
    _store(case)[("hessian", dtype)] = (True, np.array(value, dtype=float)) if ok else \
        (False, ReferenceUnavailable(str(value)))


def _reference_hessian(case: Case, dtype: str, budget_s: float | None = None) -> np.ndarray:
    with _no_gc():
        return _reference_hessian_now(case, dtype, budget_s)


def _reference_hessian_now(case: Case, dtype: str, budget_s: float | None = None) -> np.ndarray:
    import mpmath

    if case.size > MAX_HESSIAN_INPUTS:
        raise ReferenceUnavailable(f"the certified Hessian is formed for at most {MAX_HESSIAN_INPUTS} inputs "
                                   f"(2 gradients in high precision per input); this case has {case.size}")
    x = point(case, dtype)
    run = _tape_function(case, dtype)
    n = len(x)
    start = time.perf_counter()
    base = run(x, PRECISIONS[1])
    each = time.perf_counter() - start
    # two precisions, each the point and one gradient per column (more where a switch is near)
    needed = 2 * n + 2
    if budget_s and needed * each > budget_s:
        raise ReferenceUnavailable(f"forming the certified Hessian takes {needed} gradients in high precision, about "
                                   f"{needed * each:.0f} s at the {each:.2g} s one took, past the {budget_s:g} s "
                                   "budget (--timeout)")
    low = _hessian_at(run, x, PRECISIONS[0], forward=True)
    high = _hessian_at(run, x, PRECISIONS[1], forward=True)
    with mpmath.workprec(PRECISIONS[1]):
        # second derivatives are judged at the size of gradient changes per unit of input
        largest = max((abs(v) for row in high for v in row), default=mpmath.mpf(0))
        largest += max((abs(c) for c in base.scale), default=mpmath.mpf(0)) / max(_input_scale(x, i) for i in range(n))
        for i in range(n):
            for j in range(n):
                a, b = low[i][j], high[i][j]
                if not (_finite(a) and _finite(b)):
                    if not (_finite(a) or _finite(b)):
                        continue
                    raise ReferenceUnavailable(f"the second derivative ({i}, {j}) is not finite at one precision only")
                if abs(a - b) > mpmath.ldexp(abs(b) + largest, -60):
                    raise ReferenceUnavailable(f"the reference Hessian could not be certified at element ({i}, {j})")
        # an element below its own error estimate is a zero that the differences only approximate
        return np.array([[0.0 if _finite(b) and abs(b) <= 4 * abs(a - b) else _to_float(b)
                          for a, b in zip(row_low, row_high)] for row_low, row_high in zip(low, high)])


# --------------------------------------------------------------------------- Jacobians of vector outputs
#: the certified reference Jacobian is formed, one output row at a time, for at most this many output components;
#: past it a case's full-Jacobian rows are ``skipped`` and only its JVP/VJP products are measured
MAX_REFERENCE_OUTPUTS = 64


def output_label(shape: tuple[int, ...], k: int) -> str:
    """The label of flat output component ``k`` of an output of ``shape``: ``out[2]``, ``out[0, 1]``."""
    index = np.unravel_index(k, shape) if shape else ()
    return f"out[{', '.join(str(int(i)) for i in index)}]"


def component(case: Case, k: int) -> Case:
    """The scalar case whose function is output component ``k`` of ``case`` (flat, in C order): the same inputs,
    and ``xp.reshape(out, (-1,))[k]`` of what the case returns. Row k of the case's Jacobian is this case's
    gradient, so everything known about gradients (certification, kinks, ``undefined``, causes) holds per row.

    Cached on the case, so that references (cached per case object) are cached per component. The component
    checks that the case returns the shape it returns in NumPy in whatever namespace it runs (ValueError).
    """
    components = case.__dict__.setdefault("_components", {})
    if k in components:
        return components[k]
    shape = output_shape(case)
    func = case.func

    def one_output(*args: Any, xp: Any) -> Any:
        out = func(*args, xp=xp)  # type: ignore[misc]
        check_output(case, out, f"{getattr(xp, '__name__', type(xp).__name__)} namespace")
        return xp.reshape(out, (-1,))[k]

    made = Case(name=f"{case.name}{output_label(shape, k)[3:]}", func=one_output, inputs=case.inputs,
                tags=tuple(t for t in case.tags if t != "batch"), integer_inputs=case.integer_inputs,
                source_file=case.source_file, line=case.line, doc=case.doc)
    made.__dict__["_output_shape"] = ()
    components[k] = made
    return made


@dataclass
class JacobianReference:
    """The certified reference Jacobian of a case that returns an array of shape ``shape`` (in one dtype).

    ``rows[k]`` is the ordinary :class:`Reference` of output component k's gradient (``component(case, k)``),
    certified per entry exactly like any gradient: its own kinks, ``undefined``, radius and scales. Each row is
    one high-precision reverse sweep of the case's function on the tape (all m outputs are computed in each,
    one is swept): m sweeps for m outputs, cheap at the sizes the reference is formed for
    (``MAX_REFERENCE_OUTPUTS``), and every row is cached with its component case.
    """

    rows: list[Reference]
    shape: tuple[int, ...]
    inputs: dict[str, np.ndarray]

    @property
    def outputs(self) -> int:
        return len(self.rows)

    @property
    def flat(self) -> np.ndarray:
        """The (m, N) Jacobian in float64 (inputs concatenated in parameter order)."""
        if not self.rows:
            return np.zeros((0, sum(v.size for v in self.inputs.values())))
        return np.vstack([np.concatenate([np.ravel(v) for v in r.values.values()]) if r.values else r.flat
                          for r in self.rows])

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Input name -> the Jacobian block of shape ``shape + input_shape``."""
        out = {}
        for name, value in self.inputs.items():
            out[name] = np.stack([r.values[name] for r in self.rows]).reshape(self.shape + value.shape)
        return out

    @property
    def undefined_rows(self) -> list[int]:
        """Output components whose gradient does not exist at the point."""
        return [k for k, r in enumerate(self.rows) if r.undefined]

    @property
    def undefined(self) -> str | None:
        """Why the Jacobian does not exist at all: set only when no output row has a derivative here (a row
        without one is judged ``undefined`` within the row verdict instead, the others are judged)."""
        if self.rows and all(r.undefined for r in self.rows):
            return f"{output_label(self.shape, 0)}: {self.rows[0].undefined}" + \
                (f" (and every other output component)" if len(self.rows) > 1 else "")
        return None

    @property
    def uncertain(self) -> str | None:
        """Why some entries could not be certified (None when all are)."""
        texts = [f"{output_label(self.shape, k)}: {r.uncertain}" for k, r in enumerate(self.rows) if r.uncertain]
        if not texts:
            return None
        return "; ".join(texts[:2]) + (f"; and {len(texts) - 2} more output components" if len(texts) > 2 else "")

    @property
    def label(self) -> str:
        fallback = any(r.fallback for r in self.rows)
        digits = min((r.digits for r in self.rows), default=0)
        return f"{'mpmath-2prec' if fallback else 'arb'}-{digits}"

    @property
    def worst_radius(self) -> float | None:
        radii = [r.worst_radius for r in self.rows]
        if not radii or any(r is None for r in radii):
            return None
        return float(max(radii))  # type: ignore[type-var]

    @property
    def kinks(self) -> list[tuple[int, Kink]]:
        """(output component, kink) for every kink any row found."""
        return [(k, kink) for k, r in enumerate(self.rows) for kink in r.kinks]


def reference_jacobian(case: Case, dtype: str = "float64") -> JacobianReference:
    """The certified reference Jacobian of ``case`` at its point as ``dtype`` holds it, one :class:`Reference`
    per output component (cached per component). For a scalar case, a Jacobian of one row (its gradient).

    Raises ReferenceUnavailable past ``MAX_REFERENCE_OUTPUTS`` output components, and what :func:`reference`
    raises for a case that fails to evaluate.
    """
    shape = output_shape(case)
    if not shape:
        return JacobianReference([reference(case, dtype)], (), case.inputs)
    m = output_size(case)
    if m > MAX_REFERENCE_OUTPUTS:
        raise ReferenceUnavailable(
            f"{m} output components exceed the certified Jacobian's budget of {MAX_REFERENCE_OUTPUTS} "
            "(diffbench.reference.MAX_REFERENCE_OUTPUTS): one high-precision sweep per output row")
    return JacobianReference([reference(component(case, k), dtype) for k in range(m)], shape, case.inputs)
