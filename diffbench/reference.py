"""The 50-digit ground truth every method is compared with.

The sample point is taken as exact binary floats. The gradient is the SymPy
derivative evaluated with mpmath at 50 significant digits; where the symbolic trace is
over budget (or SymPy lacks a function), it is central differences of the case
evaluated in the mpmath namespace at 50 digits with h = 1e-20·max(1, |x|), whose
truncation error (~h²) and rounding error (~1e-50/h) are both far below float64's.

The reference also decides whether the gradient exists at all: it is ``undefined``
where the derivative is not finite (a singularity) or where the one-sided slopes
along an input differ (a kink), measured at 50 digits with a step of 2⁻⁸⁰·max(1, |x|).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .case import Case, per_case
from .engines import Skip, check_scalar, unflatten

DIGITS = 50
#: the kink check costs two extra 50-digit evaluations per input; done up to this many inputs
MAX_KINK_INPUTS = 400
#: the mpmath fallback costs two 50-digit evaluations per input; done up to this many inputs
MAX_FALLBACK_INPUTS = 2000


class ReferenceUnavailable(Exception):
    """No reference could be computed; the message says why."""


@dataclass
class Kink:
    """Where one-sided derivatives differ (or are not finite)."""

    label: str
    index: int
    left: float
    right: float
    picked: float

    def describe(self) -> str:
        return f"{self.label}: left derivative {self.left:.6g}, right derivative {self.right:.6g}"


@dataclass
class Reference:
    """The reference gradient at a case's point and what is known about it."""

    values: dict[str, np.ndarray]
    exact: list[Any]
    source: str
    f_value: Any
    f_mp: Callable[[list[Any]], Any]
    undefined: str | None = None
    kinks: list[Kink] = field(default_factory=list)

    @property
    def flat(self) -> np.ndarray:
        return np.array([float(v) for v in self.exact])


def labels(case: Case) -> list[str]:
    """Human labels of every flattened input element: ``x``, ``x[2]``, ``W[0, 1]``."""
    out = []
    for name, value in case.inputs.items():
        if value.ndim == 0:
            out.append(name)
        else:
            out.extend(f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(value.shape))
    return out


def point(case: Case) -> list[Any]:
    """The case's point as exact mpmath numbers (the binary float values, no rounding)."""
    import mpmath

    return [mpmath.mpf(float(v)) for value in case.inputs.values() for v in value.ravel()]


def _safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Evaluate ``fn`` at 50 digits; a division by zero or a complex result becomes NaN."""
    import mpmath

    def call(*args: Any) -> Any:
        with mpmath.workdps(DIGITS):
            try:
                out = fn(*args)
            except (ZeroDivisionError, ValueError, OverflowError):
                return mpmath.nan
        return out

    return call


def _to_mp(value: Any) -> Any:
    import mpmath

    if isinstance(value, mpmath.mpc):
        return mpmath.nan if value.imag != 0 else value.real
    try:
        return mpmath.mpf(value)
    except (TypeError, ValueError):
        try:
            c = complex(value)
        except (TypeError, ValueError):
            return mpmath.nan
        return mpmath.mpf(c.real) if c.imag == 0 else mpmath.nan


def _finite(value: Any) -> bool:
    import mpmath

    return isinstance(value, mpmath.mpf) and mpmath.isfinite(value)


def _namespace_function(case: Case) -> Callable[[list[Any]], Any]:
    """The case evaluated directly in the mpmath namespace, on a flat list of mpf."""
    from .namespaces import ObjectArray, mpmath_namespace

    def f(flat: list[Any]) -> Any:
        args, start = [], 0
        for value in case.inputs.values():
            array = np.empty(value.shape, dtype=object)
            array.reshape(-1)[:] = flat[start:start + value.size]
            start += value.size
            args.append(array.view(ObjectArray))
        out = case.func(*args, xp=mpmath_namespace())
        check_scalar(case, out, "mpmath namespace")
        return _to_mp(np.asarray(out, dtype=object).reshape(-1)[0])

    return f


@per_case
def reference(case: Case) -> Reference:
    """The 50-digit reference gradient of ``case`` (cached per case).

    Raises ReferenceUnavailable when neither the symbolic route nor the mpmath
    fallback can produce it (over budget), and the case's own exception when the
    case fails to evaluate.
    """
    return _reference(case)


def _reference(case: Case) -> Reference:
    import mpmath
    import sympy as sp

    from .engines import symbolic
    from .namespaces import UnsupportedFunction

    x = point(case)
    try:
        tr = symbolic.trace(case)
        f_expr = tr.f
        grad_exprs = tr.gradient
        f_mp = _safe(sp.lambdify([tr.symbols], f_expr, modules="mpmath"))
        g_mp = _safe(sp.lambdify([tr.symbols], grad_exprs, modules="mpmath"))
        raw = g_mp(x)
        if not isinstance(raw, (list, tuple)) or len(raw) != len(x):
            # the vectorised evaluation failed (e.g. 0/0): evaluate element by element
            raw = [_safe(sp.lambdify([tr.symbols], g, modules="mpmath"))(x) for g in grad_exprs]
        exact = [_to_mp(v) for v in raw]
        source = "symbolic"
    except (Skip, UnsupportedFunction) as why:
        if case.size > MAX_FALLBACK_INPUTS:
            raise ReferenceUnavailable(f"symbolic reference unavailable ({why}) and {case.size} inputs exceed the "
                                       f"mpmath fallback's budget of {MAX_FALLBACK_INPUTS}") from None
        f_mp = _safe(_namespace_function(case))
        exact = _mp_central(f_mp, x)
        source = "mpmath-fd"
    f_value = f_mp(x)
    ref = Reference(values={}, exact=exact, source=source, f_value=f_value, f_mp=f_mp)
    bad = [i for i, v in enumerate(exact) if not _finite(v)]
    names = labels(case)
    if isinstance(f_value, mpmath.mpc) and f_value.imag != 0:
        ref.undefined = (f"the function is not real at this point (value {mpmath.nstr(f_value, 6)}): a square root, "
                         "logarithm or power of a negative number")
    elif not _finite(f_value):
        ref.undefined = f"the function itself is not finite at this point (value {mpmath.nstr(f_value, 6)})"
    elif bad:
        ref.undefined = (f"the derivative is not finite at {names[bad[0]]} = {float(x[bad[0]]):.6g} "
                         f"(a singularity{'; also ' + str(len(bad) - 1) + ' more inputs' if len(bad) > 1 else ''})")
    elif case.size <= MAX_KINK_INPUTS:
        ref.kinks = _kinks(f_mp, x, exact, names)
        if ref.kinks:
            ref.undefined = "not differentiable here (a kink): " + "; ".join(k.describe() for k in ref.kinks[:3])
    with mpmath.workdps(DIGITS):
        flat = np.array([float(v) if _finite(v) else np.nan for v in exact])
    ref.values = unflatten(flat, case.inputs)
    return ref


def _mp_central(f_mp: Callable[[list[Any]], Any], x: list[Any]) -> list[Any]:
    import mpmath

    out = []
    with mpmath.workdps(DIGITS):
        for i, xi in enumerate(x):
            h = mpmath.mpf(10) ** -20 * max(1, abs(xi))
            up, down = list(x), list(x)
            up[i], down[i] = xi + h, xi - h
            out.append((f_mp(up) - f_mp(down)) / (2 * h))
    return out


def _kinks(f_mp: Callable[[list[Any]], Any], x: list[Any], exact: list[Any], names: list[str]) -> list[Kink]:
    import mpmath

    kinks = []
    with mpmath.workdps(DIGITS):
        f0 = f_mp(x)
        for i, xi in enumerate(x):
            h = mpmath.mpf(2) ** -80 * max(1, abs(xi))
            up, down = list(x), list(x)
            up[i], down[i] = xi + h, xi - h
            right = (f_mp(up) - f0) / h
            left = (f0 - f_mp(down)) / h
            scale = max(1, abs(right) if _finite(right) else 1, abs(left) if _finite(left) else 1)
            if not (_finite(left) and _finite(right)) or abs(right - left) > mpmath.mpf(10) ** -12 * scale:
                kinks.append(Kink(names[i], i, float(left) if _finite(left) else float("nan"),
                                  float(right) if _finite(right) else float("nan"), float(exact[i])))
    return kinks


def reference_hessian(case: Case) -> np.ndarray:
    """The 50-digit reference Hessian (N, N) rounded to float64.

    Symbolic second derivatives evaluated in mpmath, or second-order central
    differences at 50 digits (h = 1e-12·max(1, |x|)) when SymPy is over budget.
    Raises ReferenceUnavailable when neither applies. Cached per case.
    """
    return _cached_hessian(case).copy()


@per_case
def _cached_hessian(case: Case) -> np.ndarray:
    return _reference_hessian(case)


def _reference_hessian(case: Case) -> np.ndarray:
    import mpmath
    import sympy as sp

    from .engines import symbolic
    from .namespaces import UnsupportedFunction

    x = point(case)
    n = len(x)
    try:
        tr = symbolic.trace(case)
        if n > symbolic.MAX_HESSIAN_INPUTS:
            raise Skip("too many inputs for a symbolic Hessian")
        h_mp = _safe(sp.lambdify([tr.symbols], tr.hessian(), modules="mpmath"))
        raw = h_mp(x)
        return np.array([[float(_to_mp(v)) for v in row] for row in np.asarray(raw, dtype=object).reshape(n, n)])
    except (Skip, UnsupportedFunction):
        if n > symbolic.MAX_HESSIAN_INPUTS:
            raise ReferenceUnavailable(f"{n} inputs exceed the Hessian budget of {symbolic.MAX_HESSIAN_INPUTS}") from None
    f = _safe(_namespace_function(case))
    out = np.zeros((n, n))
    with mpmath.workdps(DIGITS):
        hs = [mpmath.mpf(10) ** -12 * max(1, abs(v)) for v in x]
        for i in range(n):
            for j in range(i, n):
                vals = []
                for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    p = list(x)
                    p[i] += si * hs[i]
                    p[j] += sj * hs[j]
                    vals.append(f(p))
                value = (vals[0] - vals[1] - vals[2] + vals[3]) / (4 * hs[i] * hs[j])
                out[i, j] = out[j, i] = float(value)
    return out
