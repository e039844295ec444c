"""Finite differences, evaluated with NumPy in the run's dtype.

``eps`` is the dtype's machine epsilon and ``s = max(|x|, 1)`` the scale of an input
element. Steps are rounded so that ``x ± h`` are the points actually evaluated: each
difference divides by the distance between its stencil points as the dtype holds them.

Fixed-step schemes (``h = c·s``), each with the ``c`` that balances truncation against
rounding:

- ``forward``  (f(x+h) − f(x)) / h: truncation ~ h·f''/2, rounding ~ 2·eps·|f|/h;
  the sum is smallest at h ~ eps^(1/2), error ~ eps^(1/2) (float64 1.5e-8, float32 3.5e-4).
- ``central``  (f(x+h) − f(x−h)) / 2h: truncation ~ h²·f'''/6, rounding ~ eps·|f|/h;
  smallest at h ~ eps^(1/3), error ~ eps^(2/3) (float64 3.7e-11, float32 2.4e-5).
- ``complex_step`` Im f(x + i·h) / h with h = eps²·s: no subtraction, so no
  cancellation; accurate to ~eps where the case is complex-analytic in the namespace.

``richardson`` chooses its step per element. Central differences D(h) = f' + a₁h² + a₂h⁴ + …
are taken at h_k = h₀/2^k and combined in a Richardson table,
T[k][j] = T[k][j−1] + (T[k][j−1] − T[k−1][j−1]) / (4^j − 1), whose entry T[k][j] has
truncation O(h_k^(2j+2)). Each entry's error is estimated as its distance from the two
lower-order entries it was built from (the truncation still in it) plus its rounding,
eps·|f|/h_k carried through the same recurrence. The entry with the smallest estimate is
the result and its estimate is ``error_estimate``; rows are added until the estimates
grow again (rounding has taken over), reach 8·eps or ``MAX_EXTRA_ROWS`` rows are added to
the first three (at most 7 rows and the check below, 16 calls of f per element). The start h₀ = c₀·s with
c₀ = 2⁻² is deliberately large: the rounding of T[k][j] is about eps·|f|/h_k, so a large
step that high order makes accurate leaves an error near 10·eps·|f|/(|f'|·s), in
float64 ~1e-15 where |f| ~ |f'|·s, instead of central differences' eps^(2/3). Where the
table converges only to order h⁴ (j = 1), the balance of h⁴ truncation against eps/h
rounding gives eps^(4/5): the ``richardson`` tolerance (100·eps^(4/5), diffbench.metrics)
assumes no more than that.

A start that is too large for the function is detected, not assumed away:

- *Not yet asymptotic*: in the h² regime successive differences shrink by 4,
  (D(h) − D(h/2)) / (D(h/2) − D(h/4)) ≈ 4. A ratio outside [2, 8] means the function
  changes on a scale smaller than h (a nearby pole, a boundary, fast oscillation: e.g.
  1/x at x = 6e-6 from h₀ = 0.25, which would straddle the pole); the start is divided
  by 16 and tried again, so steps end up relative to the scale the function shows.
- *Outside the domain*: a NaN or inf at a stencil point (log at 1e-3 from h₀ = 0.25)
  divides the start by 16 as well; where every step up to 16⁻⁶·h₀ still reaches a
  non-finite value on one side, a one-sided table (powers h, h², …) on the finite side is
  used instead. Either way ``Prepared.info["note"]`` says so. The first, too-large rows may
  evaluate f outside its domain (that is how the boundary is found); the rows the result is
  built from do not.

``forward`` and ``central`` keep their fixed step, except that a NaN or inf on one side of
the stencil (the other side finite) halves h until both are finite, with a note.

Error estimates (``error``, per element, absolute; ``FiniteEngine.prepare`` turns their norm
into the row's relative ``error_estimate``) bound truncation and f's noise, not only eps·|f|:

- ``forward``/``central``: truncation from a second stencil (the central difference at h, resp.
  at 2h), plus the noise of f's values, the larger of eps·|f| and what their fourth difference
  over x − 2h … x + 2h shows (``noise_level``: a formula that cancels, 1 − cos x near 0, carries
  the rounding of the large numbers it subtracted), divided by the step. In prepare only: the
  estimate costs 2 (forward: 3) further calls per element and one of f(x).
- ``complex_step``: the same noise bound on the quotient Im f(x + ih)/h itself at x ± δ, x ± 2δ
  (4 calls per element), its truncation h²·f‴/6 with f‴ from those quotients, and inf where f
  overflowed.
- ``richardson``: its table's estimate (above).
- every scheme: the rounding of the result to the dtype (eps·|g|), and f's resolution at 0,
  the smallest subnormal: f that underflowed to 0 is known only to that, so a zero gradient from
  zero values gets no finite relative bound.

Hessians (every variant): second differences extrapolated the same way. The diagonal uses
(f(x+h) − 2f(x) + f(x−h)) / h², the off-diagonal the seven-point form
[f(x+u) + f(x−u) − f(x+v) − f(x−v) − f(x+w) − f(x−w) + 2f(x)] / (2h_i·h_j) with
u = v + w, v = h_i·e_i, w = h_j·e_j, which reuses the diagonal's points; both have
truncation series in even powers of the step, so the same table applies.

Aliasing: steps that halve from near a multiple of f's period stay near multiples (sin 50x at x = 3
from h = 0.5 ≈ 4 periods: 25, 12.5, 6.25 radians, each just short of a multiple of 2π), and their three
differences shrink by 4 as a smooth function's do, towards a wrong limit. So a start is accepted only
where the difference at ``CHECK_STEP``·h = h/√2 (an irrational fraction, not near a multiple there) lies
on the series fitted through the three levels; otherwise the start is divided by 16 as above. The check
costs one more level (2 calls) per start.

Cost of a Hessian: N diagonal and N(N−1)/2 off-diagonal entries, each usually 3 levels, the check and up
to 3 extra rows, 2 new calls of f per level: about 14·N(N+1)/2 = 7·N(N+1) calls (70,701 measured for
Rosenbrock at N = 100, ~1–3 s here), more where starts shrink. ``MAX_HESSIAN_INPUTS`` = 128 keeps that
near 10⁵ calls; ``FiniteEngine.hessian`` raises Skip beyond it.

Jacobians (a case that returns an array, ``jacobian``): the same schemes, one column per input element,
each stencil point evaluated once for all m outputs (``_Outputs`` keeps its values); every output row is
differentiated as above, so each entry gets its own error estimate and Richardson its own table and step.

Evaluation: by default every point is one call of the case's NumPy function. With a ``batch`` function
(``BatchedFunction``: ``jax.jit(jax.vmap(case))`` under ``jax.numpy`` in float64, checked once per case
against NumPy by ``batched_function``) the work runs in rounds (``_each``): every element's (every
Hessian entry's) next stencil points are gathered and evaluated in one call, the first round taking a
start's three levels, its check and the rows that may be added, then the tables are built as before. The
results are those of the same algorithm on values that differ from NumPy's in their last bits (JAX
sums in another order and has its own exp/sin/log); a case that raises under JAX (NumPy calls, in-place
updates, Python branches on values) or differs by more than ``BATCH_ULPS`` is evaluated per point. The
complex step is never batched: it relies on the complex-safe NumPy namespace.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import products
from ..products import PRODUCT_VARIANTS
from ..case import Case
from . import EngineInfo, OverBudget, Prepared, Skip, check_output, flatten, output_shape, output_size, split, unflatten

#: exponent p in c = eps**p for each fixed-step scheme (see the module docstring);
#: for ``richardson``, the exponent of the step a single two-level extrapolation would balance at
#: (``richardson`` itself starts at ``RICHARDSON_START`` and chooses its step adaptively)
STEP_EXPONENT = {"forward": 1 / 2, "central": 1 / 3, "richardson": 1 / 5}
#: c₀ of the Richardson table's first row, h₀ = c₀·max(|x|, 1) (a power of two: exact steps)
RICHARDSON_START = 2.0**-2
#: rows of a Richardson table beyond the three that establish the h² regime
MAX_EXTRA_ROWS = 3
#: how often the start is divided by ``SHRINK`` before giving up on a two-sided stencil
MAX_SHRINKS = 6
SHRINK = 16.0
#: the step, relative to a start h, at which the three levels h, h/2, h/4 are checked against their own fit
#: (irrational, so that steps aliased to a period of f by halving are not aliased there too)
CHECK_STEP = math.sqrt(0.5)
#: new points per Hessian entry in the usual case: levels h, h/2, h/4, the check step and three extra rows,
#: two new points each (the diagonal's f(x ± hᵢ) are shared with the off-diagonal stencils)
HESSIAN_CALLS_PER_ENTRY = 14
#: the finite-difference Hessian's input budget: ~7·N(N+1) ≈ 1.2·10⁵ calls of f at N = 128
MAX_HESSIAN_INPUTS = 128
#: the finite-difference Hessian's time budget in seconds: once the entries formed so far project the whole past
#: it (after its first second), the Hessian is given up as a skip instead of running into the run's --timeout
MAX_HESSIAN_S = 60.0
#: the ``richardson`` gradient's time budget in seconds, by the same projection: its adaptive table costs 6 to 24
#: calls of f per element (central differences: 2), so on a slow f it is the variant that runs into --timeout
#: (an LSTM of 133 weights over 1024 characters, 0.1 s per call: past 120 s, where central takes 28 s)
MAX_RICHARDSON_S = 60.0


def step_scale(scheme: str, dtype: str) -> float:
    """The relative step ``c`` used by ``scheme`` in ``dtype`` (for ``richardson``, its first row's)."""
    eps = float(np.finfo(dtype).eps)
    if scheme == "complex_step":
        return eps**2
    if scheme == "richardson":
        return RICHARDSON_START
    return eps ** STEP_EXPONENT[scheme]


def function_of(case: Case, dtype: str) -> Callable[[np.ndarray], Any]:
    """The case as a function of one flat vector, evaluated with NumPy (real or complex): a scalar, or for a case
    that returns an array (``output_shape``) its m values as a flat vector (C order)."""
    from ..namespaces import ComplexSafeArray, numpy_namespace

    xp = numpy_namespace(dtype)
    shapes = [v.shape for v in case.inputs.values()]
    vector = bool(output_shape(case))

    def f(flat: np.ndarray) -> Any:
        # copies, never views of ``flat``: a case that changes its inputs in place must not move the
        # stencil point whose offset p - x is read after f(p)
        args = [part.copy().view(ComplexSafeArray) if np.iscomplexobj(part) else part.copy()
                for part in split(flat, shapes)]
        out = case.func(*args, xp=xp)
        check_output(case, out, "NumPy namespace")
        value = np.asarray(out).reshape(-1 if vector else ())
        if value.dtype.kind not in "fc":
            if value.dtype.kind in "iub":
                return value.astype(flat.dtype)
            raise TypeError(f"case {case.name!r} returned {value!r} ({value.dtype}), not a number")
        return value if vector else value[()]

    return f


#: how the case is evaluated at a stencil's points (the ``evaluation`` of a row): one NumPy call per point,
#: or one ``jax.vmap`` call (under ``jax.numpy``, float64 in x64 mode) for all the points of a round
PER_POINT, BATCHED = "numpy", "jax.vmap"
#: the largest difference, in units in the last place of f, that batched values may show from NumPy's at
#: the check points (JAX sums in another order and has its own exp/sin/log: 1 to 4 ulps measured; see
#: benchmarks/RESULTS.md)
BATCH_ULPS = 4
#: batches are padded to a power of two (at least ``MIN_BATCH``) and cut at ``MAX_BATCH`` points, so
#: that a case is compiled for a few batch sizes only
MIN_BATCH, MAX_BATCH = 16, 4096


class BatchedFunction:
    """The case at a batch of flat points in one call: ``jax.jit(jax.vmap(case))`` under ``jax.numpy``, on the CPU.

    Call it with a (B, N) array of points; it returns their B values (NumPy, in the run's dtype).
    ``calls`` counts the compiled calls made (a batch past ``MAX_BATCH`` takes several).
    """

    def __init__(self, case: Case, dtype: str):
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        from ..namespaces import array_api_namespace

        xp = array_api_namespace(jnp, "JAX (jax.numpy)", getattr(jnp, dtype))
        shapes = [(v.shape, v.size) for v in case.inputs.values()]
        func = case.func

        def one(flat: Any) -> Any:
            args, start = [], 0
            for shape, size in shapes:
                args.append(jnp.reshape(flat[start:start + size], shape))
                start += size
            return jnp.reshape(func(*args, xp=xp), ())

        self._jax, self._device = jax, jax.devices("cpu")[0]
        self._f = jax.jit(jax.vmap(one))
        self.dtype = np.dtype(dtype)
        self.calls = 0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(points), MAX_BATCH):
            chunk = points[start:start + MAX_BATCH]
            size = max(MIN_BATCH, 1 << (len(chunk) - 1).bit_length())
            padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk), axis=0)])
            with self._jax.default_device(self._device):
                values = np.asarray(self._f(padded))
            self.calls += 1
            out.append(values[:len(chunk)])
        return np.concatenate(out)


_BATCHED: dict[tuple[Any, ...], tuple[BatchedFunction | None, str]] = {}


def batched_function(case: Case, dtype: str) -> tuple[BatchedFunction | None, str]:
    """The case batched (``BatchedFunction``) and "", or None and why batched evaluation does not apply.

    Checked once per case, dtype and point: the batched values at x and at three points around it must be
    NumPy's, within ``BATCH_ULPS`` units in the last place (and non-finite exactly where NumPy's are). A
    case that raises under ``jax.numpy`` or ``jax.vmap`` (NumPy calls on its input, in-place updates,
    Python branches on values), takes integer inputs, or differs beyond that gets None.
    """
    x = flatten(case.inputs, list(case.inputs)).astype(dtype)
    key = (case.name, case.source_hash if case.func else "", dtype, x.tobytes())
    if key not in _BATCHED:
        _BATCHED[key] = _checked_batch(case, dtype, x)
    return _BATCHED[key]


def _checked_batch(case: Case, dtype: str, x: np.ndarray) -> tuple[BatchedFunction | None, str]:
    if np.dtype(dtype).kind != "f":
        return None, f"batched evaluation is real only ({dtype})"
    if case.integer_inputs:
        return None, "the case has integer inputs"
    try:
        batch = BatchedFunction(case, dtype)
    except ImportError:
        return None, "JAX is not installed"
    f = function_of(case, dtype)
    h = _power_of_two(2.0**-4 * max(float(np.max(np.abs(x.astype(np.float64)), initial=0.0)), 1.0))
    signs = np.where(np.arange(x.size) % 2 == 0, 1.0, -1.0)
    points = np.stack([x, x + (h * (np.arange(x.size) == 0)).astype(x.dtype),
                       x - (h * (np.arange(x.size) == x.size - 1)).astype(x.dtype), x + (h * signs).astype(x.dtype)])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want = np.array([float(np.real(f(p))) for p in points])
        except Exception as exc:  # noqa: BLE001 - the per-point path reports it
            return None, f"the case raises in NumPy ({type(exc).__name__})"
        try:
            got = batch(points).astype(np.float64)
        except Exception as exc:  # noqa: BLE001 - any failure under JAX means: evaluate per point
            return None, f"the case does not run batched under jax.numpy ({type(exc).__name__}: {str(exc)[:120]})"
        finite = np.isfinite(want)
        if got.shape != want.shape or not np.array_equal(finite, np.isfinite(got)) \
                or not np.array_equal(want[~finite], got[~finite], equal_nan=True):
            return None, "jax.numpy and NumPy disagree on where the case is finite"
        ulps = np.abs(got[finite] - want[finite]) / np.spacing(np.maximum(np.abs(got[finite]), np.abs(want[finite])).astype(dtype)).astype(np.float64)
    worst = float(np.max(ulps, initial=0.0))
    if worst > BATCH_ULPS:
        return None, f"jax.numpy's values differ from NumPy's by {worst:.3g} units in the last place"
    return batch, ""


@dataclass
class FiniteResult:
    """A finite-difference derivative with what it cost and what happened on the way.

    ``value``: the gradient (flat, in the dtype of ``x``) or the (N, N) Hessian (float64);
    ``error``: an absolute error estimate per entry; ``steps``: the step each element's
    result came from; ``notes``: sentences for the row's diagnosis (empty when nothing
    unusual happened); ``evaluations``: calls of f.
    """

    value: np.ndarray
    error: np.ndarray
    steps: np.ndarray
    notes: list[str] = field(default_factory=list)
    evaluations: int = 0
    value_dtype: np.dtype | None = None
    #: batched calls (0 where every point was one call of f)
    batches: int = 0


class _Missing(Exception):
    """The work asked for points that the current round of batched evaluation has not evaluated yet."""


class _Evaluator:
    """f at x shifted along coordinates, cached per shift, counted, in float64 for the arithmetic.

    With ``batch`` (a function of a (B, N) array of points returning their B values), the work runs in
    rounds (``_each``): in a round, a point not yet evaluated is recorded and a NaN stands in for it; at
    the next ``sync`` the work stops, and once every task has stopped or finished, the recorded points
    are evaluated in one batched call and the unfinished tasks run again from the start, now reading the
    cache. Without ``batch``, every point is one call of f and ``sync`` does nothing.
    """

    def __init__(self, f: Callable[[np.ndarray], Any], x: np.ndarray,
                 batch: Callable[[np.ndarray], np.ndarray] | None = None):
        self.f, self.x, self.batch = f, x, batch
        self.cache: dict[tuple[tuple[int, float], ...], tuple[float, np.ndarray]] = {}
        self.evaluations = 0
        self.batches = 0
        self.value_dtype: np.dtype | None = None
        self.collecting = False
        self.missed = False
        self.misses = 0
        self._unknown = np.full(x.shape, np.nan)
        self.pending: dict[tuple[tuple[int, float], ...], np.ndarray] = {}

    def at(self, *shifts: tuple[int, float]) -> tuple[float, np.ndarray]:
        """(f(p), p − x as the dtype holds p, in float64) for p = x + Σ h·e_i over ``shifts``."""
        key = tuple(sorted(shifts))
        if key not in self.cache:
            p = self.x.copy()
            for i, h in shifts:
                p[i] += h
            if self.collecting:
                self.pending[key] = p
                self.missed = True
                self.misses += 1
                return math.nan, self._unknown
            self._store(key, p, self._value(p, bool(shifts)))
        return self.cache[key]

    def _value(self, p: np.ndarray, shifted: bool) -> Any:
        """f(p); at a stencil point (not x itself) where f raises an arithmetic or domain error (a singular
        matrix: LinAlgError, a division by zero), NaN, so that the step shrinks as where f is not finite. At x
        the error is the case's own and is raised (checked first, so a case that always raises stays an error)."""
        try:
            return self.f(p)
        except (ArithmeticError, ValueError):
            if not shifted:
                raise
            self.at()
            return math.nan

    def _store(self, key: tuple[tuple[int, float], ...], p: np.ndarray, value: Any) -> None:
        self.evaluations += 1
        if self.value_dtype is None:
            self.value_dtype = np.asarray(value).dtype
        offset = p.astype(np.float64) - self.x.astype(np.float64)
        self.cache[key] = (float(np.real(value)), offset)

    def sync(self) -> None:
        """Stop the work here if it asked for points this round has not evaluated (batched evaluation only)."""
        if self.missed:
            self.missed = False
            raise _Missing

    def flush(self) -> None:
        """Evaluate every point recorded in this round in one batched call."""
        if not self.pending:
            return
        keys = list(self.pending)
        points = np.stack([self.pending[k] for k in keys])
        values = self.batch(points)
        self.batches += 1
        for key, point, value in zip(keys, points, values):
            self._store(key, point, value)
        self.pending.clear()


def _each(ev: _Evaluator, tasks: list[Callable[[], Any]]) -> list[Any]:
    """Every task's result: one after the other, or with batched evaluation, in rounds (see ``_Evaluator``).

    A task must read f only through ``ev`` and have no effect but its result, so that it can run again.
    """
    if ev.batch is None:
        return [task() for task in tasks]
    results: list[Any] = [None] * len(tasks)
    todo = list(range(len(tasks)))
    ev.collecting = True
    try:
        while todo:
            left = []
            for index in todo:
                ev.missed = False
                try:
                    results[index] = tasks[index]()
                    ev.sync()
                except _Missing:
                    left.append(index)
            if left and not ev.pending:
                raise RuntimeError("batched finite differences made no progress")  # a task that never syncs
            ev.flush()
            todo = left
    finally:
        ev.collecting, ev.missed = False, False
        ev.pending.clear()
    return results


def _within(tasks: list[Callable[[], Any]], budget_s: float, what: str = "the finite-difference Hessian's",
            unit: str = "entries", knob: str = "MAX_HESSIAN_S") -> list[Callable[[], Any]]:
    """``tasks`` that raise OverBudget once those finished so far, after the first second, project all of them
    past ``budget_s`` seconds (each Hessian entry, or each gradient element, costs about the same)."""
    start = time.perf_counter()
    finished = [0]

    def bounded(task: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            result = task()
            finished[0] += 1
            elapsed = time.perf_counter() - start
            projected = elapsed * len(tasks) / finished[0]
            if elapsed > 1.0 and projected > budget_s:
                raise OverBudget(f"{what} {len(tasks)} {unit} would take about {projected:.0f} s (the first "
                                 f"{finished[0]} took {elapsed:.1f} s), past its budget of {budget_s:g} s "
                                 f"(diffbench.engines.finite.{knob})")
            return result
        return run

    return [bounded(task) for task in tasks]


def _power_of_two(h: float) -> float:
    return 2.0 ** math.floor(math.log2(h)) if h > 0 else h


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _table(levels: list[tuple[float, float]], ratio_power: list[float]) -> tuple[float, float, int, int]:
    """Richardson table over (estimate, rounding) levels at steps h/2^k; (best, its error, row, column).

    ``ratio_power[j]`` is 2^(p_j) for the j-th truncation power p_j eliminated in column j+1.
    """
    t = [[levels[0][0]]]
    noise = [[levels[0][1]]]
    best, best_err, best_k, best_j = levels[0][0], math.inf, 0, 0
    for k in range(1, len(levels)):
        row, row_noise = [levels[k][0]], [levels[k][1]]
        for j in range(1, k + 1):
            factor = ratio_power[j - 1] - 1
            row.append(row[j - 1] + (row[j - 1] - t[k - 1][j - 1]) / factor)
            row_noise.append(row_noise[j - 1] + (row_noise[j - 1] + noise[k - 1][j - 1]) / factor)
        t.append(row)
        noise.append(row_noise)
        for j in range(1, k + 1):
            # distance from both entries it was built from: what truncation is left in it
            truncation = max(abs(row[j] - row[j - 1]), abs(row[j] - t[k - 1][j - 1]))
            err = truncation + row_noise[j]
            if err < best_err:
                best, best_err, best_k, best_j = row[j], err, k, j
    return best, best_err, best_k, best_j


def _asymptotic(d: list[tuple[float, float]]) -> bool:
    """Whether three successive levels show the leading truncation term shrinking like h^p."""
    (d0, n0), (d1, n1), (d2, n2) = d
    first, second = d0 - d1, d1 - d2
    if abs(second) <= 4 * (n1 + n2):
        # the two finer levels agree within rounding: nothing left to see of truncation
        return abs(first) <= 64 * (n0 + n1) or abs(first) <= 1e-3 * max(abs(d1), abs(d2))
    ratio = first / second
    return 2.0 <= ratio <= 8.0


@functools.lru_cache(maxsize=None)
def _check_weights(powers: tuple[float, float]) -> np.ndarray:
    """Weights w with Σ w_k·D(h/2^k) = P(h·``CHECK_STEP``), P the fit D₀ + a·h^p₁ + b·h^p₂ through three levels."""
    nodes = np.array([1.0, 0.5, 0.25])
    basis = np.vstack([np.ones(3), nodes ** powers[0], nodes ** powers[1]])
    return np.linalg.solve(basis, np.array([1.0, CHECK_STEP ** powers[0], CHECK_STEP ** powers[1]]))


def _consistent(levels: list[tuple[float, float]], check: tuple[float, float], weights: np.ndarray) -> bool:
    """Whether D at the check step is where the truncation series fitted through the three levels puts it.

    In the asymptotic regime the fit misses it by the next term of the series, about 0.05 of the first
    difference D(h) − D(h/2) (at most; the weights are those of ``CHECK_STEP``). Steps near multiples of a
    period of f alias: halving them keeps them near multiples, and the three levels look asymptotic (sin 50x
    at x = 3 from h = 0.5 ≈ 4 periods: ratio 4.0, limit −0.19 against f' = 35), but the check step, an
    irrational fraction of h, is not near one, and D there lies far off the fit.
    """
    predicted = float(weights @ np.array([d for d, _ in levels]))
    rounding = float(np.abs(weights) @ np.array([n for _, n in levels])) + check[1]
    return abs(check[0] - predicted) <= abs(levels[0][0] - levels[1][0]) + 4 * rounding


def _remembered(ev: _Evaluator, level: Callable[[float], tuple[float, float]]) -> Callable[[float], tuple[float, float]]:
    """``level``, computed once per step where all its points were known."""
    memo: dict[float, tuple[float, float]] = {}

    def known(h: float) -> tuple[float, float]:
        if h not in memo:
            misses = ev.misses
            value = level(h)
            if ev.misses != misses:
                return value
            memo[h] = value
        return memo[h]

    return known


def _extrapolate(ev: _Evaluator, level: Callable[[float], tuple[float, float]], h0: float, powers: list[float],
                 floor: float) -> tuple[float, float, float, float, str | None]:
    """Extrapolate ``level(h) -> (estimate, rounding)`` to h → 0 from a start of h0.

    Returns (value, error estimate, the step of the chosen row, the start actually used,
    why the start was shrunk: ``"nonfinite"``, ``"slow"`` or None). ``floor`` is the
    relative accuracy below which more rows cannot help (a few eps). A start is accepted when its
    three levels look asymptotic (``_asymptotic``) and D at ``CHECK_STEP``·h agrees with them
    (``_consistent``).
    """
    ratio_power = [2.0**p for p in powers]
    weights = _check_weights((powers[0], powers[1]))
    if ev.collecting:
        level = _remembered(ev, level)
    h, reason = h0, None
    # the last start whose three levels were finite: where smaller starts fall below the dtype's resolution
    # (x ± h rounds to x) rather than outside f's domain, the extrapolation falls back on it
    last_finite: tuple[list[tuple[float, float]], float] | None = None
    for _ in range(MAX_SHRINKS + 1):
        if ev.collecting:
            # one round for the start's three levels, its check and the rows that may be added: in rounds,
            # a round costs more than the points a table may not need
            for k in range(3 + MAX_EXTRA_ROWS):
                level(h / 2**k)
            level(h * CHECK_STEP)
            ev.sync()
        levels: list[tuple[float, float]] = []
        for k in range(3):
            est = level(h / 2**k)
            if not _finite(*est):
                break
            levels.append(est)
        if len(levels) == 3:
            last_finite = (levels, h)
        if len(levels) < 3:
            reason = reason or "nonfinite"
        elif _asymptotic(levels):
            check = level(h * CHECK_STEP)
            if _finite(*check) and _consistent(levels, check, weights):
                break
            reason = reason or "slow"
        else:
            reason = reason or "slow"
        h /= SHRINK
    else:
        if len(levels) < 3 and last_finite is not None and reason == "slow":
            levels, h = last_finite[0], last_finite[1] / SHRINK  # undone below
        elif len(levels) < 3:
            return math.nan, math.inf, h * SHRINK, h * SHRINK, reason
        h *= SHRINK  # never asymptotic: the best the last finite start gives, with its (large) estimate
    best, err, k, _ = _table(levels, ratio_power)
    extra = 0
    while extra < MAX_EXTRA_ROWS and err > floor * abs(best):
        est = level(h / 2 ** len(levels))
        ev.sync()
        if not _finite(*est):
            break
        levels.append(est)
        extra += 1
        new_best, new_err, new_k, _ = _table(levels, ratio_power)
        if new_err < err:
            best, err, k = new_best, new_err, new_k
        elif new_err > 4 * err:
            break  # rounding has taken over: smaller steps only get worse
    return best, err, h / 2**k, h, (reason if h < h0 else None)


def _tiny(ev: _Evaluator) -> float:
    return float(np.finfo(ev.x.dtype).smallest_subnormal) if ev.x.dtype.kind == "f" else 0.0


def _central_level(ev: _Evaluator, i: int, eps: float, centre: bool = False) -> Callable[[float], tuple[float, float]]:
    tiny = _tiny(ev)

    def level(h: float) -> tuple[float, float]:
        up, p = ev.at((i, h))
        down, q = ev.at((i, -h))
        width = p[i] - q[i]
        if width == 0:
            return math.nan, math.nan
        # f's rounding at its values; a value that underflowed to 0 is known only to the smallest subnormal
        rounding = (eps * (abs(up) + abs(down)) + 2 * tiny) / width
        if centre:
            # x ± h are rounded, so the stencil's centre is known only to ~eps·h: an error of eps·h·|f''|,
            # which is everything where |x| is below the step's ulp (x = 1e-30 with h = 0.25)
            f0, _ = ev.at()
            rounding += eps * abs(up + down - 2 * f0) / width
        return (up - down) / width, rounding

    return level


def _one_sided_level(ev: _Evaluator, i: int, eps: float, sign: float) -> Callable[[float], tuple[float, float]]:
    tiny = _tiny(ev)

    def level(h: float) -> tuple[float, float]:
        f0, _ = ev.at()
        far, p = ev.at((i, sign * h))
        width = p[i]
        if width == 0:
            return math.nan, math.nan
        return (far - f0) / width, 2 * (eps * (abs(far) + abs(f0)) + 2 * tiny) / abs(width)

    return level


_NOTE_NONFINITE = "f is not finite at a stencil point (x outside the function's domain)"
_NOTE_SLOW = "the differences did not converge at the first step (the function varies faster than the step)"


def _richardson(ev: _Evaluator, x: np.ndarray, c0: float, eps: float, floor: float,
                names: Callable[[int], str], budget_s: float | None = None) -> FiniteResult:
    def element(i: int) -> tuple[float, float, float, str | None]:
        h0 = _power_of_two(c0 * max(abs(float(x[i])), 1.0))
        value, error, step, start, why = _extrapolate(ev, _central_level(ev, i, eps, centre=True), h0,
                                                      [2.0 * j for j in range(1, 12)], floor)
        note = None
        f0, _ = ev.at()
        ev.sync()
        if not math.isfinite(value) and _finite(f0):
            # no two-sided stencil stays finite: difference on the side where f is
            right_value, _ = ev.at((i, start))
            sides = [ev.at((i, sign * h))[0] for h in (start, h0) for sign in (1.0, -1.0)]
            ev.sync()
            right = _finite(right_value)
            if _finite(*sides):
                # f is finite on both sides: the steps fell below the dtype's resolution, not out of the domain
                return value, error, step, (f"{names(i)}: the differences found no start down to the dtype's "
                                            f"resolution at which they converge (shrunk to {start:.2g})")
            sign = 1.0 if right else -1.0
            value, error, step, _, _ = _extrapolate(ev, _one_sided_level(ev, i, eps, sign), h0,
                                                    [float(j) for j in range(1, 12)], floor)
            note = (f"{names(i)}: f is not finite on the {'left' if right else 'right'} of x (outside its "
                    f"domain), so one-sided {'forward' if right else 'backward'} differences were extrapolated "
                    f"(step {step:.2g})")
        elif why == "nonfinite":
            note = f"{names(i)}: {_NOTE_NONFINITE} at h = {h0:.2g}; the step was shrunk to {start:.2g}"
        elif why == "slow" and start <= h0 / SHRINK**2:
            note = (f"{names(i)}: {_NOTE_SLOW} h = {h0:.2g}; the step was shrunk to {start:.2g} (a pole, "
                    "boundary or kink is near)")
        # the result is stored in the run's dtype: its own rounding
        return value, error + eps * abs(value), step, note

    tasks = [lambda i=i: element(i) for i in range(x.size)]
    if budget_s:
        tasks = _within(tasks, budget_s, "Richardson extrapolation's", "gradient elements", "MAX_RICHARDSON_S")
    results = _each(ev, tasks)
    grad = np.array([r[0] for r in results], dtype=np.float64)
    err = np.array([r[1] for r in results], dtype=np.float64)
    steps = np.array([r[2] for r in results], dtype=np.float64)
    notes = [r[3] for r in results if r[3]]
    return FiniteResult(grad.astype(x.dtype), err, steps, notes)


def _fixed_level(ev: _Evaluator, i: int, h: float, scheme: str, eps: float) -> tuple[float, float, tuple[float, ...]]:
    """(difference, rounding, the stencil's f values) of one fixed-step scheme at step h."""
    if scheme == "forward":
        f0, _ = ev.at()
        up, p = ev.at((i, h))
        return ((up - f0) / p[i] if p[i] else math.nan), 2 * eps * abs(f0) / h, (f0, up)
    up, _ = ev.at((i, h))
    down, _ = ev.at((i, -h))
    value, rounding = _central_level(ev, i, eps)(h)
    return value, rounding, (up, down)


def noise_level(values: list[float]) -> float:
    """A bound on the noise in five values of a function at equally spaced points, after Moré & Wild's ECnoise.

    The fourth difference of a smooth function at a small spacing δ is of order δ⁴; what is
    left is the independent error of each value: for errors of size σ its variance is
    (1 + 16 + 36 + 16 + 1)·σ² = 70σ². One fourth difference estimates σ as |Δ⁴|/√70, within a factor
    of 2 about two times in three; twice that is returned, so that the rows whose error is noise alone
    are bounded in most cases (the library's coverage figures are in benchmarks/RESULTS.md).
    Returns NaN where a value is not finite.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size != 5 or not np.all(np.isfinite(v)):
        return math.nan
    return 2 * abs(float(np.diff(v, 4)[0])) / math.sqrt(70)


def _resolution(eps: float, tiny: float, *values: float) -> float:
    """The size of f's rounding at its values: eps·|f|, and never below the smallest subnormal (a value that
    underflowed to 0 is known only to that)."""
    return eps * max((abs(v) for v in values), default=0.0) + tiny


def _fixed_estimate(ev: _Evaluator, i: int, h: float, scheme: str, value: float, eps: float, tiny: float) -> float:
    """An absolute error bound for one fixed-step difference: truncation from a second stencil, plus f's noise.

    f's noise σ is the larger of its rounding at its own values (eps·|f|) and the noise its values show at
    x − 2h … x + 2h (``noise_level``): where the formula cancels (1 − cos x near 0), f's values carry the
    rounding of the much larger numbers they were computed from, which eps·|f| does not see. The central
    truncation a·h² is D(2h) − D(h) over 3; forward's h·f''/2 is its distance from the central difference.
    The noise enters D(h) as (e₊ − e₋)/2h (central, standard deviation σ/(√2·h)) or (e₊ − e₀)/h
    (forward, √2·σ/h); twice that is counted.
    """
    f0, _ = ev.at()
    around = [ev.at((i, k * h))[0] if k else f0 for k in (-2, -1, 0, 1, 2)]
    other, _ = _central_level(ev, i, eps)(h if scheme == "forward" else 2 * h)
    ev.sync()
    sigma = max(_resolution(eps, tiny, *around), 0.0 if math.isnan(noise := noise_level(around)) else noise)
    if scheme == "forward":
        truncation = abs(value - other)
        noise = 2 * math.sqrt(2) * sigma / h
    else:
        truncation = abs(value - other) / 3
        noise = math.sqrt(2) * sigma / h
    if not math.isfinite(truncation):
        return math.inf  # the second stencil leaves the domain: no estimate
    # the result is stored in the run's dtype: its own rounding
    return truncation + noise + eps * abs(value)


def _fixed_step(f: Callable[[np.ndarray], Any], x: np.ndarray, scheme: str, c: float, eps: float,
                names: Callable[[int], str], estimate: bool,
                batch: Callable[[np.ndarray], np.ndarray] | None = None) -> FiniteResult:
    """Forward or central differences at h = c·max(|x|, 1), halving h while a stencil point is not finite."""
    ev = _Evaluator(f, x, batch)
    tiny = float(np.finfo(x.dtype).smallest_subnormal)

    def element(i: int) -> tuple[float, float, float, str | None]:
        h0 = c * max(abs(float(x[i])), 1.0)
        value, rounding, sides = _fixed_level(ev, i, h0, scheme, eps)
        ev.sync()
        h = h0
        if not math.isfinite(value) and any(_finite(v) for v in sides):
            # one side of the stencil left the domain: shrink towards the side where f is defined
            for _ in range(20):
                smaller, smaller_rounding, sides = _fixed_level(ev, i, h / 2, scheme, eps)
                ev.sync()
                h /= 2
                if math.isfinite(smaller):
                    value, rounding = smaller, smaller_rounding
                    break
            else:
                h = h0
        note = None
        if h < h0 and math.isfinite(value):
            note = f"{names(i)}: {_NOTE_NONFINITE} at h = {h0:.2g}; the step was shrunk to {h:.2g}"
        err = _fixed_estimate(ev, i, h, scheme, value, eps, tiny) if estimate else math.nan
        return value, h, err, note

    results = _each(ev, [lambda i=i: element(i) for i in range(x.size)])
    grad = np.array([r[0] for r in results], dtype=np.float64)
    steps = np.array([r[1] for r in results], dtype=np.float64)
    err = np.array([r[2] for r in results], dtype=np.float64)
    notes = [r[3] for r in results if r[3]]
    return FiniteResult(grad.astype(x.dtype), err, steps, notes, ev.evaluations, ev.value_dtype, ev.batches)


def _complex_level(f: Callable[[np.ndarray], Any], x: np.ndarray, i: int, shift: float, h: float,
                   ctype: np.dtype) -> tuple[float, Any]:
    """(Im f(x + shift·eᵢ + i·h·eᵢ) / h, the value f returned)."""
    z = x.astype(ctype)
    z[i] += shift
    z[i] += 1j * h
    out = f(z)
    if not np.iscomplexobj(out):
        raise Skip("the case drops the imaginary part (a real-only operation); the complex step does not "
                   "apply: use central or richardson")
    return float(np.imag(out)) / h, out


def _complex_step(f: Callable[[np.ndarray], Any], x: np.ndarray, c: float, eps: float,
                  estimate: bool = True) -> FiniteResult:
    """Im f(x + i·h·eᵢ)/h per element; with ``estimate``, its error from the same quotient at x ± δ, x ± 2δ.

    The complex step never subtracts, so its error is the rounding of f's own evaluation as it
    reaches the imaginary part (1 − cos x near 0 carries eps at the size of 1 into it) plus
    truncation h²·f‴/6. Both show in the quotient at nearby points δ = eps^(1/3)·max(|x|, 1) apart:
    its fourth difference is its noise (``noise_level``; a smooth derivative's is ~δ⁴, far below
    eps), its second difference over δ² estimates f‴. δ is far larger than the distance over which
    the rounding of f's intermediates stays the same, so the nearby quotients' errors are independent.
    """
    n = x.size
    grad = np.empty(n, dtype=x.dtype)
    err = np.empty(n)
    steps = np.empty(n)
    ctype = np.result_type(x.dtype, np.complex64)
    tiny = float(np.finfo(x.dtype).smallest_subnormal)
    value_dtype = None
    evaluations = 0
    for i in range(n):
        s = max(abs(float(x[i])), 1.0)
        h = c * s
        value, out = _complex_level(f, x, i, 0.0, h, ctype)
        evaluations += 1
        value_dtype = value_dtype or np.asarray(np.real(out)).dtype
        grad[i] = value
        steps[i] = h
        # the quotient is stored in the dtype, and an imaginary part that underflowed is known only to tiny/h
        err[i] = eps * abs(float(grad[i])) + tiny / h
        if not np.isfinite(out):
            err[i] = math.inf  # f overflowed: what is left of its imaginary part says nothing
        elif estimate:
            delta = _power_of_two(eps ** (1 / 3) * s)
            around = [_complex_level(f, x, i, k * delta, h, ctype)[0] if k else value for k in (-2, -1, 0, 1, 2)]
            evaluations += 4
            noise = noise_level(around)
            if math.isfinite(noise):
                # twice the noise bound, as for the fixed steps, and the truncation h²·f‴/6 with f‴ from second
                # differences of the complex-step derivative; (h/δ)² first, so that huge |x| cannot overflow
                err[i] += 2 * noise + (h / delta) ** 2 * abs(around[1] - 2 * around[2] + around[3]) / 6
    return FiniteResult(grad, err, steps, [], evaluations, value_dtype)


def differentiate(f: Callable[[np.ndarray], Any], x: np.ndarray, scheme: str, c: float | None = None, *,
                  estimate: bool = True, names: Callable[[int], str] | None = None,
                  batch: Callable[[np.ndarray], np.ndarray] | None = None,
                  budget_s: float | None = None) -> FiniteResult:
    """The finite-difference gradient of ``f`` at ``x`` by ``scheme``, with its error estimate and notes.

    ``c`` is the relative step (``step_scale`` by default). ``estimate=False`` skips the
    extra evaluations the fixed-step schemes and the complex step need for an error
    estimate (``richardson`` gets its estimate from its own table). ``batch``, a function of a (B, N)
    array of points returning their B values (``batched_function``), evaluates the points of every
    element's stencil in one call per round instead of one call per point; the complex step ignores
    it. ``budget_s`` bounds ``richardson``'s time: once its elements so far project the gradient past it, it
    raises OverBudget. Raises ValueError for an unknown scheme, Skip where the complex step does not apply, and
    whatever ``f`` (or ``batch``) raises.
    """
    dtype = x.dtype
    eps = float(np.finfo(dtype).eps)
    c = step_scale(scheme, dtype.name) if c is None else c
    label = names or (lambda i: f"x[{i}]")
    if scheme == "complex_step":
        return _complex_step(f, x, c, eps, estimate)
    if scheme in ("forward", "central"):
        return _fixed_step(f, x, scheme, c, eps, label, estimate, batch)
    if scheme != "richardson":
        raise ValueError(f"unknown finite-difference scheme {scheme!r}")
    ev = _Evaluator(f, x, batch)
    result = _richardson(ev, x, c, eps, 8 * eps, label, budget_s)
    result.evaluations, result.value_dtype, result.batches = ev.evaluations, ev.value_dtype, ev.batches
    return result


class _Outputs:
    """A vector function memoised per point, so that the m scalar functions ``component(k)`` share its
    evaluations: each stencil point is one call of f for all m outputs. An exception at a point is remembered
    and raised again for every component."""

    def __init__(self, f: Callable[[np.ndarray], Any]):
        self.f = f
        self.cache: dict[tuple[str, bytes], tuple[bool, Any]] = {}

    def __call__(self, p: np.ndarray) -> Any:
        key = (p.dtype.str, p.tobytes())
        hit = self.cache.get(key)
        if hit is None:
            try:
                hit = (True, np.asarray(self.f(p)).reshape(-1))
            except Exception as exc:  # noqa: BLE001 - re-raised below, once per component as f itself would
                hit = (False, exc)
            self.cache[key] = hit
        if not hit[0]:
            raise hit[1]
        return hit[1]

    def component(self, k: int) -> Callable[[np.ndarray], Any]:
        return lambda p: self(p)[k]

    @property
    def evaluations(self) -> int:
        return len(self.cache)


def jacobian(f: Callable[[np.ndarray], Any], x: np.ndarray, outputs: int, scheme: str, c: float | None = None, *,
             estimate: bool = True, names: Callable[[int], str] | None = None,
             output_names: Callable[[int], str] | None = None) -> FiniteResult:
    """The finite-difference Jacobian of a vector function ``f`` (flat point -> ``outputs`` values) at ``x``.

    Each column comes from the same stencil as :func:`differentiate`'s gradient component, and every
    evaluation of f serves all m outputs at once (f is called once per distinct stencil point). Row k is
    :func:`differentiate` of output k, so each *entry* has its own error estimate (Richardson's from its own
    table, each entry choosing its own step; the fixed steps' from their second stencil and f's noise) and
    ``steps`` the step it came from. Returns a :class:`FiniteResult` whose ``value`` (in x's dtype),
    ``error`` and ``steps`` are (m, N); notes name the output. Raises as :func:`differentiate` does.
    """
    shared = _Outputs(f)
    label = output_names or (lambda k: f"out[{k}]")
    rows = [differentiate(shared.component(k), x, scheme, c, estimate=estimate, names=names)
            for k in range(outputs)]
    notes: list[str] = []
    for k, row in enumerate(rows):
        notes.extend(f"{label(k)} / {note}" for note in row.notes)
    if len(notes) > 6:
        notes = notes[:6] + [f"and {len(notes) - 6} more notes of the same kind"]
    value = np.vstack([r.value for r in rows]) if rows else np.zeros((0, x.size), dtype=x.dtype)
    return FiniteResult(value.astype(x.dtype), np.vstack([r.error for r in rows]) if rows else np.zeros((0, x.size)),
                        np.vstack([r.steps for r in rows]) if rows else np.zeros((0, x.size)), notes,
                        shared.evaluations, next((r.value_dtype for r in rows if r.value_dtype is not None), None))


def derivative(f: Callable[[np.ndarray], Any], x: np.ndarray, scheme: str, c: float, *,
               estimate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The finite-difference gradient of ``f`` at ``x`` and an absolute error estimate per element.

    See :func:`differentiate`, which also returns the notes and the evaluation count.
    """
    result = differentiate(f, x, scheme, c, estimate=estimate)
    return result.value, result.error


def _element_names(case: Case) -> Callable[[int], str]:
    labels = []
    for name, value in case.inputs.items():
        if value.size == 1 and value.ndim == 0:
            labels.append(name)
        else:
            labels.extend(f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(value.shape))
    return lambda i: labels[i] if i < len(labels) else f"x[{i}]"


def hessian_matrix(f: Callable[[np.ndarray], Any], x: np.ndarray, c0: float = RICHARDSON_START, *,
                   batch: Callable[[np.ndarray], np.ndarray] | None = None,
                   budget_s: float | None = None) -> FiniteResult:
    """Richardson-extrapolated second differences of ``f`` at ``x``: the (N, N) Hessian in float64.

    Steps start at c0·max(|x_i|, 1) and shrink where the differences are not yet
    asymptotic or a stencil point is not finite (see the module docstring). ``batch`` as in
    :func:`differentiate`. Raises what ``f`` raises, and OverBudget once the entries formed so far (after the
    first second) project the whole Hessian past ``budget_s`` seconds.
    """
    eps = float(np.finfo(x.dtype).eps)
    floor = 64 * eps
    ev = _Evaluator(f, x, batch)
    n = x.size
    out = np.empty((n, n))
    err = np.empty((n, n))
    steps = np.empty((n, n))
    scale = [_power_of_two(c0 * max(abs(float(v)), 1.0)) for v in x]
    notes: list[str] = []
    powers = [2.0 * j for j in range(1, 12)]

    def diagonal(i: int) -> Callable[[float], tuple[float, float]]:
        def level(t: float) -> tuple[float, float]:
            f0, _ = ev.at()
            up, p = ev.at((i, t * scale[i]))
            down, q = ev.at((i, -t * scale[i]))
            a, b = p[i], -q[i]
            if a <= 0 or b <= 0:
                return math.nan, math.nan
            value = 2 * (up * b + down * a - f0 * (a + b)) / (a * b * (a + b))
            return value, 4 * eps * (abs(up) + 2 * abs(f0) + abs(down)) / (a * b)

        return level

    def cross(i: int, j: int) -> Callable[[float], tuple[float, float]]:
        def level(t: float) -> tuple[float, float]:
            hi, hj = t * scale[i], t * scale[j]
            f0, _ = ev.at()
            values = [ev.at((i, hi), (j, hj)), ev.at((i, -hi), (j, -hj)), ev.at((i, hi)), ev.at((i, -hi)),
                      ev.at((j, hj)), ev.at((j, -hj))]
            (fpp, p), (fmm, _), (fpi, _), (fmi, _), (fpj, _), (fmj, _) = values
            a, b = p[i], p[j]
            if a <= 0 or b <= 0:
                return math.nan, math.nan
            value = (fpp + fmm - fpi - fmi - fpj - fmj + 2 * f0) / (2 * a * b)
            total = sum(abs(v) for v, _ in values) + 2 * abs(f0)
            return value, 4 * eps * total / (2 * a * b)

        return level

    def diagonal_entry(i: int) -> tuple[float, float, float, str | None]:
        value, error, t, _, why = _extrapolate(ev, diagonal(i), 1.0, powers, floor)
        note = None
        if why:
            note = (f"x[{i}]: {_NOTE_NONFINITE if why == 'nonfinite' else _NOTE_SLOW}; second-difference step "
                    f"shrunk to {t * scale[i]:.2g}")
        return value, error, t * scale[i], note

    def cross_entry(i: int, j: int) -> tuple[float, float, float, None]:
        value, error, t, _, _ = _extrapolate(ev, cross(i, j), 1.0, powers, floor)
        return value, error, t, None

    pairs = [(i, i) for i in range(n)] + [(i, j) for i in range(n) for j in range(i + 1, n)]
    tasks = [(lambda i=i: diagonal_entry(i)) if i == j else (lambda i=i, j=j: cross_entry(i, j)) for i, j in pairs]
    if budget_s:
        tasks = _within(tasks, budget_s)
    with np.errstate(all="ignore"):
        results = _each(ev, tasks)
    for (i, j), (value, error, step, note) in zip(pairs, results):
        out[i, j] = out[j, i] = value
        err[i, j] = err[j, i] = error
        steps[i, j] = steps[j, i] = step
        if note:
            notes.append(note)
    return FiniteResult(out, err, steps, notes, ev.evaluations, ev.value_dtype, ev.batches)


class FiniteEngine:
    """Finite differences of the case's NumPy evaluation.

    ``evaluation`` is ``PER_POINT`` (the default: one NumPy call per point) or ``BATCHED`` (one ``jax.vmap``
    call per round where ``batched_function`` accepts the case, per point otherwise, with a note saying
    why). Each row's ``info["evaluation"]`` says which was used; ``last_hessian_info`` does for the last
    ``hessian``.
    """

    name = "finite"
    info = EngineInfo(variants=("forward", "central", "complex_step", "richardson", "jvp", "vjp"), default_variant="central",
                      exact=False, exact_variants=("complex_step",),
                      error_exponents={"forward": 1 / 2, "central": 2 / 3, "richardson": 4 / 5,
                                       "jvp": 4 / 5, "vjp": 4 / 5},
                      order2_exponent=1 / 2, jacobian_variants=("jvp", "vjp"),
                      order2_variants=("central",), scaling_variants=("central",), run_scaling_variants=("central",),
                      max_hessian_inputs=MAX_HESSIAN_INPUTS, default=True,
                      options={"evaluation": (PER_POINT, BATCHED)})
    evaluation = PER_POINT

    def __init__(self) -> None:
        self.last_hessian_info: dict[str, Any] = {}

    def variants(self) -> tuple[str, ...]:
        return self.info.variants

    def devices(self) -> list[str]:
        return ["CPU"]

    def _batch(self, case: Case, variant: str, dtype: str) -> tuple[BatchedFunction | None, dict[str, Any], str]:
        """(the batched case or None, the row's evaluation columns, a note where batching was refused)."""
        if self.evaluation != BATCHED:
            return None, {"evaluation": PER_POINT}, ""
        if variant == "complex_step":
            return None, {"evaluation": PER_POINT}, ("batched evaluation not used: the complex step needs the "
                                                     "complex-safe NumPy namespace (abs, comparisons on real parts)")
        batch, why = batched_function(case, dtype)
        if batch is None:
            return None, {"evaluation": PER_POINT}, f"batched evaluation not used: {why}"
        return batch, {"evaluation": BATCHED}, ""

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        if variant in PRODUCT_VARIANTS:  # J·v and uᵀ·J without the matrix: one module for every method
            return products.prepare(self.name, case, variant, dtype, device)
        if variant not in self.variants():
            raise ValueError(f"unknown finite variant {variant!r}; known: {self.variants()}")
        f = function_of(case, dtype)
        x = flatten(case.inputs, list(case.inputs)).astype(dtype)
        c = step_scale(variant, dtype)
        names = _element_names(case)
        if output_shape(case):
            return self._prepare_jacobian(case, variant, dtype, f, x, c, names)
        start = time.perf_counter()
        batch, evaluation, refused = self._batch(case, variant, dtype)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = differentiate(f, x, variant, c, names=names, batch=batch, budget_s=MAX_RICHARDSON_S)
            except (TypeError, ValueError, AttributeError) as exc:
                if variant != "complex_step":
                    raise
                f(x)  # a case broken for real inputs too is an error, not a complex-step limitation
                raise Skip(f"the case is not complex-analytic in the NumPy namespace ({exc}); use "
                           "central or richardson") from None
        prepare_s = time.perf_counter() - start
        grad = result.value
        info: dict[str, Any] = {"step": c if variant != "richardson" else _relative_step(result.steps, x),
                                **evaluation}
        norm = _scaled_norm(grad.astype(np.float64))
        est = _scaled_norm(np.asarray(result.error, dtype=np.float64))
        # ‖g − r‖ ≤ est and ‖r‖ ≥ ‖g‖ − est bound the relative error; no bound where est ≥ ‖g‖
        info["error_estimate"] = est / (norm - est) if norm > est else (math.inf if est > 0 else 0.0)
        notes = list(result.notes)
        value_dtype = result.value_dtype if batch is None else np.asarray(f(x)).dtype
        if value_dtype is not None and value_dtype != np.dtype(dtype) and value_dtype.kind == "f":
            notes.insert(0, f"the function returned {value_dtype} in a {dtype} run (a constant of another "
                            "dtype promoted it; create constants with xp.asarray)")
        if refused:
            notes.append(refused)
        if notes:
            info["note"] = "; ".join(notes)

        def gradient() -> dict[str, np.ndarray]:
            return unflatten(grad.copy(), case.inputs)

        def timed() -> Any:
            with np.errstate(all="ignore"):
                return differentiate(f, x, variant, c, estimate=False, batch=batch).value

        def f_timed() -> Any:
            with np.errstate(all="ignore"):
                return f(x)

        return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=prepare_s, info=info,
                        f_key="numpy")

    def _prepare_jacobian(self, case: Case, variant: str, dtype: str, f: Callable[[np.ndarray], Any],
                          x: np.ndarray, c: float, names: Callable[[int], str]) -> Prepared:
        """The Jacobian of a case that returns an array (:func:`jacobian`): one column per input component,
        all outputs from each evaluation. Evaluated per point: batched evaluation (``jax.vmap``) is for scalar
        cases, and a row that asked for it says it was not used."""
        from ..reference import output_label

        shape, m = output_shape(case), output_size(case)
        start = time.perf_counter()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = jacobian(f, x, m, variant, c, names=names, output_names=lambda k: output_label(shape, k))
            except (TypeError, ValueError, AttributeError) as exc:
                if variant != "complex_step":
                    raise
                f(x)
                raise Skip(f"the case is not complex-analytic in the NumPy namespace ({exc}); use "
                           "central or richardson") from None
        prepare_s = time.perf_counter() - start
        value = result.value
        info: dict[str, Any] = {"step": c if variant != "richardson" else _relative_step(result.steps.ravel(),
                                                                                        np.tile(x, m)),
                                "evaluation": PER_POINT, "evaluations": result.evaluations,
                                "jacobian_error": np.asarray(result.error, dtype=np.float64)}
        # per output row, the bound on its relative error as for a gradient; the row's is the worst of them
        bounds = []
        for k in range(m):
            norm = _scaled_norm(value[k].astype(np.float64))
            est = _scaled_norm(np.asarray(result.error[k], dtype=np.float64))
            bounds.append(est / (norm - est) if norm > est else (math.inf if est > 0 else 0.0))
        info["error_estimate"] = max(bounds) if bounds else 0.0
        notes = list(result.notes)
        if self.evaluation == BATCHED:
            notes.append("batched evaluation not used: the case returns an array, and its Jacobian is evaluated "
                         "per point (each point gives all its outputs at once)")
        if result.value_dtype is not None and result.value_dtype != np.dtype(dtype) and result.value_dtype.kind == "f":
            notes.insert(0, f"the function returned {result.value_dtype} in a {dtype} run (a constant of another "
                            "dtype promoted it; create constants with xp.asarray)")
        if notes:
            info["note"] = "; ".join(notes)

        def gradient() -> dict[str, np.ndarray]:
            return _unflatten_jacobian(value.copy(), case.inputs, shape)

        def timed() -> Any:
            with np.errstate(all="ignore"):
                return jacobian(f, x, m, variant, c, estimate=False).value

        def f_timed() -> Any:
            with np.errstate(all="ignore"):
                return f(x)

        return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=prepare_s, info=info,
                        f_key="numpy")

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        """Richardson-extrapolated second differences (every variant uses this scheme).

        Raises Skip past ``MAX_HESSIAN_INPUTS`` inputs (the cost argument is in the module docstring), and for
        a case that returns an array (its second derivative is a third-order tensor).
        """
        if output_shape(case):
            raise Skip(f"the case returns an array of shape {output_shape(case)}: the second derivative of a vector "
                       "output is a third-order tensor, which diffbench does not form")
        n = case.size
        if n > MAX_HESSIAN_INPUTS:
            raise Skip(f"{n} inputs exceed the finite-difference Hessian budget of {MAX_HESSIAN_INPUTS} (about "
                       f"{HESSIAN_CALLS_PER_ENTRY}·N(N+1)/2 evaluations of f: {_hessian_calls(n):.2g} here)")
        f = function_of(case, dtype)
        x = flatten(case.inputs, list(case.inputs)).astype(dtype)
        batch, evaluation, refused = self._batch(case, "richardson", dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = hessian_matrix(f, x, batch=batch, budget_s=MAX_HESSIAN_S)
        self.last_hessian_info = {**evaluation, "evaluations": result.evaluations, **({"note": refused} if refused
                                                                                     else {})}
        return result.value


def _unflatten_jacobian(flat: np.ndarray, like: dict[str, np.ndarray], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """An (m, N) Jacobian as input name -> block of shape ``shape + input_shape`` (columns in parameter order)."""
    out, start = {}, 0
    for name, value in like.items():
        out[name] = flat[:, start:start + value.size].reshape(tuple(shape) + value.shape)
        start += value.size
    return out


def _hessian_calls(n: int) -> int:
    return HESSIAN_CALLS_PER_ENTRY * n * (n + 1) // 2


def _relative_step(steps: np.ndarray, x: np.ndarray) -> float:
    """The median chosen step relative to max(|x|, 1) (the ``step`` column of a Richardson row)."""
    if steps.size == 0:
        return RICHARDSON_START
    return float(np.median(steps / np.maximum(np.abs(x.astype(np.float64)), 1.0)))


def _scaled_norm(values: np.ndarray) -> float:
    """‖v‖₂ scaled by the largest entry first, so gradients of size 1e-200 do not square to 0."""
    with np.errstate(all="ignore"):
        largest = float(np.max(np.abs(values))) if values.size else 0.0
        if largest == 0 or not np.isfinite(largest):
            return largest
        return largest * float(np.linalg.norm(values / largest))


def sweep(case: Case, dtype: str, scheme: str, reference_flat: np.ndarray,
          scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normwise relative error of ``scheme`` against the reference for a range of step scales ``c``.

    Returns (scales, errors); the classic V: truncation error falls with c, rounding rises.
    For ``richardson``, c is the start of its table.
    """
    eps = float(np.finfo(dtype).eps)
    if scales is None:
        scales = np.logspace(np.log10(eps) + 1, -1, 25)
    f = function_of(case, dtype)
    x = flatten(case.inputs, list(case.inputs)).astype(dtype)
    ref_norm = _scaled_norm(np.asarray(reference_flat, dtype=np.float64)) or 1.0
    errors = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in scales:
            g = differentiate(f, x, scheme, float(c), estimate=False).value
            errors.append(_scaled_norm(g.astype(np.float64) - reference_flat) / ref_norm)
    return np.asarray(scales), np.asarray(errors)
