"""Finite differences, evaluated with NumPy in the run's dtype.

Step per input element: ``h = c · max(|x|, 1)``, then rounded so that ``x + h`` is
exactly representable (``h = (x + h) - x``). ``c`` balances truncation against rounding
for the dtype's machine epsilon ``eps``:

- ``forward``  (f(x+h) - f(x)) / h: truncation ~ h·f''/2, rounding ~ 2·eps·|f|/h;
  the sum is smallest at h ~ sqrt(eps), error ~ sqrt(eps) (float64 1.5e-8, float32 3.5e-4).
- ``central``  (f(x+h) - f(x-h)) / 2h: truncation ~ h²·f'''/6, rounding ~ eps·|f|/h;
  smallest at h ~ eps^(1/3), error ~ eps^(2/3) (float64 3.7e-11, float32 2.4e-5).
- ``richardson`` (4·D(h/2) - D(h)) / 3 of central differences D: truncation ~ h⁴;
  best at h ~ eps^(1/5), error ~ eps^(4/5).
- ``complex_step`` Im f(x + i·h) / h with h = eps²·max(|x|, 1): no subtraction, so no
  cancellation; accurate to ~eps where the case is complex-analytic in the namespace.

Each gradient comes with an error estimate (truncation from comparing two steps, plus
the rounding term), reported normwise relative to the gradient.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np

from ..case import Case
from . import Prepared, Skip, check_scalar, flatten, unflatten

#: exponent p in c = eps**p for each scheme (see the module docstring)
STEP_EXPONENT = {"forward": 1 / 2, "central": 1 / 3, "richardson": 1 / 5}
#: second differences for the Hessian: truncation ~ h², rounding ~ eps·|f|/h², best at eps^(1/4)
HESSIAN_EXPONENT = 1 / 4
MAX_HESSIAN_INPUTS = 40


def step_scale(scheme: str, dtype: str) -> float:
    """The relative step ``c`` used by ``scheme`` in ``dtype``."""
    eps = float(np.finfo(dtype).eps)
    if scheme == "complex_step":
        return eps**2
    return eps ** STEP_EXPONENT[scheme]


def function_of(case: Case, dtype: str) -> Callable[[np.ndarray], Any]:
    """The case as a function of one flat vector, evaluated with NumPy (real or complex)."""
    from ..namespaces import ComplexSafeArray, numpy_namespace

    xp = numpy_namespace(dtype)
    shapes = [(name, v.shape, v.size) for name, v in case.inputs.items()]

    def f(flat: np.ndarray) -> Any:
        args, start = [], 0
        for _, shape, size in shapes:
            part = flat[start:start + size].reshape(shape)
            if np.iscomplexobj(part):
                part = part.view(ComplexSafeArray)
            args.append(part)
            start += size
        out = case.func(*args, xp=xp)
        check_scalar(case, out, "NumPy namespace")
        value = np.asarray(out).reshape(())
        if value.dtype.kind not in "fc":
            if value.dtype.kind in "iub":
                return value.astype(flat.dtype)
            raise TypeError(f"case {case.name!r} returned {value!r} ({value.dtype}), not a number")
        return value[()]

    return f


def _steps(x: np.ndarray, c: float) -> np.ndarray:
    h = c * np.maximum(np.abs(x), 1)
    return ((x + h) - x).astype(x.dtype)


def derivative(f: Callable[[np.ndarray], Any], x: np.ndarray, scheme: str, c: float) -> tuple[np.ndarray, np.ndarray]:
    """The finite-difference gradient of ``f`` at ``x`` and an absolute error estimate per element."""
    dtype = x.dtype
    eps = float(np.finfo(dtype).eps)
    n = x.size
    grad = np.empty(n, dtype=dtype)
    est = np.empty(n)
    f0 = f(x)
    if scheme == "complex_step":
        ctype = np.result_type(dtype, np.complex64)
        for i in range(n):
            h = c * max(abs(float(x[i])), 1.0)
            z = x.astype(ctype)
            z[i] += 1j * h
            grad[i] = np.imag(f(z)) / h
            est[i] = eps * abs(float(grad[i]))
        return grad, est

    def central(i: int, h: Any) -> float:
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        return (f(up) - f(down)) / (up[i] - down[i])

    h_all = _steps(x, c)
    for i in range(n):
        h = h_all[i]
        rounding = eps * abs(float(f0)) / float(h) if np.isfinite(f0) else np.nan
        if scheme == "forward":
            up = x.copy()
            up[i] += h
            grad[i] = (f(up) - f0) / h
            est[i] = abs(float(grad[i]) - float(central(i, h))) + 2 * rounding
        elif scheme == "central":
            grad[i] = central(i, h)
            est[i] = abs(float(grad[i]) - float(central(i, 2 * h))) / 3 + rounding
        elif scheme == "richardson":
            d_half, d_one, d_two = central(i, h / 2), central(i, h), central(i, 2 * h)
            grad[i] = (4 * d_half - d_one) / 3
            previous = (4 * d_one - d_two) / 3
            est[i] = abs(float(grad[i]) - float(previous)) / 15 + 3 * rounding
        else:
            raise ValueError(f"unknown finite-difference scheme {scheme!r}")
    return grad, est


class FiniteEngine:
    """Finite differences of the case's NumPy evaluation."""

    name = "finite"

    def variants(self) -> tuple[str, ...]:
        return ("forward", "central", "complex_step", "richardson")

    def devices(self) -> list[str]:
        return ["CPU"]

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        if variant not in self.variants():
            raise ValueError(f"unknown finite variant {variant!r}; known: {self.variants()}")
        f = function_of(case, dtype)
        x = flatten(case.inputs, list(case.inputs)).astype(dtype)
        c = step_scale(variant, dtype)
        start = time.perf_counter()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = f(x)
            if variant == "complex_step":
                try:
                    z = x.astype(np.result_type(dtype, np.complex64))
                    z[0] += 1j * c
                    probe = f(z)
                except (TypeError, ValueError, AttributeError) as exc:
                    raise Skip(f"the case is not complex-analytic in the NumPy namespace ({exc}); use "
                               "central or richardson") from None
                if not np.iscomplexobj(probe):
                    raise Skip("the case drops the imaginary part (a real-only operation); the complex step "
                           "does not apply: use central or richardson")
            grad, est = derivative(f, x, variant, c)
        prepare_s = time.perf_counter() - start
        info: dict[str, Any] = {"step": c}
        norm = float(np.linalg.norm(grad.astype(np.float64)))
        info["error_estimate"] = float(np.linalg.norm(est)) / norm if norm > 0 else float(np.linalg.norm(est))
        if np.asarray(value).dtype != np.dtype(dtype) and np.asarray(value).dtype.kind == "f":
            info["note"] = (f"the function returned {np.asarray(value).dtype} in a {dtype} run (a constant of "
                            "another dtype promoted it; create constants with xp.asarray)")

        def gradient() -> dict[str, np.ndarray]:
            with np.errstate(all="ignore"):
                g, _ = derivative(f, x, variant, c)
            return unflatten(g, case.inputs)

        def timed() -> Any:
            with np.errstate(all="ignore"):
                return derivative(f, x, variant, c)

        def f_timed() -> Any:
            with np.errstate(all="ignore"):
                return f(x)

        return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=prepare_s, info=info,
                        f_key="numpy")

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        """Second-order central differences of the function (every variant uses this scheme)."""
        n = case.size
        if n > MAX_HESSIAN_INPUTS:
            raise Skip(f"{n} inputs exceed the finite-difference Hessian budget of {MAX_HESSIAN_INPUTS}")
        f = function_of(case, dtype)
        x = flatten(case.inputs, list(case.inputs)).astype(dtype)
        h = _steps(x, float(np.finfo(dtype).eps) ** HESSIAN_EXPONENT)
        out = np.empty((n, n))
        with np.errstate(all="ignore"):
            for i in range(n):
                for j in range(i, n):
                    vals = []
                    for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                        p = x.copy()
                        p[i] += si * h[i]
                        p[j] += sj * h[j]
                        vals.append(float(f(p)))
                    out[i, j] = out[j, i] = (vals[0] - vals[1] - vals[2] + vals[3]) / (4 * float(h[i]) * float(h[j]))
        return out


def sweep(case: Case, dtype: str, scheme: str, reference_flat: np.ndarray,
          scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normwise relative error of ``scheme`` against the reference for a range of step scales ``c``.

    Returns (scales, errors); the classic V: truncation error falls with c, rounding rises.
    """
    eps = float(np.finfo(dtype).eps)
    if scales is None:
        scales = np.logspace(np.log10(eps) + 1, -1, 25)
    f = function_of(case, dtype)
    x = flatten(case.inputs, list(case.inputs)).astype(dtype)
    ref_norm = float(np.linalg.norm(reference_flat)) or 1.0
    errors = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in scales:
            g, _ = derivative(f, x, scheme, float(c))
            errors.append(float(np.linalg.norm(g.astype(np.float64) - reference_flat)) / ref_norm)
    return np.asarray(scales), np.asarray(errors)
