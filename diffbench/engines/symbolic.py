"""Symbolic differentiation: trace the case with SymPy symbols, ``sympy.diff``, ``lambdify``.

The trace (the function as one SymPy expression of real symbols, one per input
element) is shared with the 50-digit reference. Symbolic cost grows fast, so two
budgets apply before any differentiation: the number of scalar inputs
(``MAX_INPUTS``) and the size of the function's expression (``MAX_OPS``, SymPy's
``count_ops``, decided first by :func:`tree_ops`, which walks each shared subexpression once), and
a trace that runs past ``MAX_TRACE_S`` is stopped. Past any of them the method is ``skipped``
with the reason (``OverBudget``). SymPy's Hessians have a budget of their own by predicted cost
(``MAX_HESSIAN_COST``).

The ``symengine`` variant does the same with SymEngine (SymPy's C++ core): the case is
traced with :func:`diffbench.namespaces.symengine_namespace`, differentiated with
SymEngine and compiled with ``symengine.Lambdify`` (CSE on, LLVM backend where the
SymEngine build has it). It has budgets of its own (``SYMENGINE_MAX_INPUTS``,
``SYMENGINE_MAX_OPS``, ``SYMENGINE_MAX_HESSIAN_INPUTS``). A case SymEngine cannot
represent faithfully (``xp.maximum``, ``xp.abs``, ``xp.floor``, ``xp.expm1``, ``xp.linalg``:
see ``namespaces._SymEngineNamespace.LACKING``), or whose SymEngine derivative is left
unevaluated, falls back to the SymPy path of the ``numpy`` variant; the row then says so in
its diagnosis (``Prepared.info["note"]``).

Expression sizes (columns ``expr_ops`` and ``grad_ops``): SymPy's ``count_ops`` for the
SymPy variants (``grad_ops`` counted on ``sympy.cse``'s output for ``numpy`` and
``tensorflow``, on the plain gradient for ``numpy-nocse``). For ``symengine``,
:func:`count_ops` counts SymEngine trees by the same rules as ``sympy.count_ops`` (one
operation per ``+ − × ÷``, power and function); ``grad_ops`` counts each distinct
subexpression once, which is what a common-subexpression pass leaves when it shares every
repeated subtree. ``sympy.cse`` also regroups the arguments of sums and products, so its
count can be somewhat lower for the same gradient.

Vector outputs (a case returning an array of shape S, see ``engines.output_shape``): every variant
returns the Jacobian, per input of shape I an array of shape S + I. The SymPy variants trace the case
once (:func:`jacobian_trace`), form ``sympy.Matrix(outputs).jacobian(symbols)`` and lambdify its
entries as they do a gradient (``numpy`` and ``tensorflow`` with CSE, ``numpy-nocse`` without);
``symengine`` forms SymEngine's ``DenseMatrix.jacobian`` and compiles it with ``symengine.Lambdify``
(falling back to SymPy as for gradients). Budgets: the inputs and the expression size (the outputs'
operations together) as for a gradient, and for SymPy a predicted cost, Σₖ count_ops(outₖ)·|inputs in
outₖ| (the work of the m·N derivatives and their lambdify, the per-output cost times the outputs),
within ``MAX_JACOBIAN_COST``; for SymEngine at most ``SYMENGINE_MAX_JACOBIAN_ENTRIES`` entries.
``expr_ops`` is then the outputs' operations together and ``grad_ops`` the Jacobian's. Hessians of
vector outputs are not formed (Skip).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..case import Case, per_case
from . import EngineInfo, OverBudget, Prepared, Skip, check_output, check_scalar, flatten, output_shape, unflatten

#: largest number of scalar inputs the symbolic method differentiates
MAX_INPUTS = 2000
#: largest expression (sympy.count_ops of the function) the symbolic method differentiates
MAX_OPS = 40000
#: SymPy forms a Hessian only where its predicted cost is within this budget. The cost is the expression size
#: times the inputs², counting for each first derivative only the inputs it depends on:
#: Σᵢ count_ops(∂f/∂xᵢ)·|inputs in ∂f/∂xᵢ| (the work of the N² second derivatives and their lambdify).
#: Measured on 2 loaded cores: Rosenbrock n = 20 costs 562 (0.8 s), n = 80 2362 (2 s), a 12-input attention
#: block 27,560 (6 s), a 21-weight tanh MLP 110,922 (25 s: over budget; the ``symengine`` variant takes 0.15 s)
MAX_HESSIAN_COST = 60_000
#: kept for callers that read it: no input count limits SymPy's Hessians any more (MAX_HESSIAN_COST does)
MAX_HESSIAN_INPUTS = MAX_INPUTS
#: the ``symengine`` variant's budgets (the same meaning as the three above)
SYMENGINE_MAX_INPUTS = 20000
SYMENGINE_MAX_OPS = 2_000_000
SYMENGINE_MAX_HESSIAN_INPUTS = 400
#: ``symengine.Lambdify`` compiles the gradient in blocks of this many components: its CSE and the
#: LLVM compilation grow faster than linearly with the size of one block
SYMENGINE_BLOCK = 256
#: a block with more distinct operations than this is not compiled (the row is ``skipped``): LLVM's time grows
#: faster than linearly with one function's size. Measured on 2 cores: llsq n = 256, m = 128 (121,563 distinct
#: operations in its gradient) compiles in 16 s; gmm d = 2, k = 5, n = 1000 (258,864) ran past 90 s
SYMENGINE_MAX_COMPILE_OPS = 150_000
#: the ``numpy-nocse`` variant prints and compiles the gradient as a tree (no shared subexpressions); one whose
#: tree has more operations than this is not compiled (the row is ``skipped``, naming the size: the expression
#: swell this variant exists to show). Measured on 2 cores: BA (2 cameras, 3 points, 4 observations), 491,633
#: operations without CSE against 2,873 with it, took 36 s to lambdify; the tree is counted in well under 1 s
MAX_NOCSE_OPS = 200_000


@dataclass
class SymbolicTrace:
    """The case as a SymPy expression, and (lazily) its gradient."""

    case: Case
    symbols: list[Any]
    f: Any
    trace_s: float
    f_ops: int
    _gradient: list[Any] | None = None
    diff_s: float = 0.0
    _cache: dict[str, Any] = field(default_factory=dict)
    #: the comparisons on values the case's code branched on, decided at the point (diffbench.branching)
    guards: list[Any] = field(default_factory=list)

    @property
    def gradient(self) -> list[Any]:
        """d f / d symbol for every input element, in flattened parameter order."""
        if self._gradient is None:
            import sympy as sp

            start = time.perf_counter()
            with sign_heuristics_off():
                self._gradient = [sanitize(sp.diff(self.f, s)) for s in self.symbols]
            self.diff_s = time.perf_counter() - start
        return self._gradient

    def hessian(self) -> Any:
        """The (N, N) SymPy matrix of second derivatives."""
        if "hessian" not in self._cache:
            import sympy as sp

            grads = self.gradient
            self._cache["hessian"] = sp.Matrix([[sanitize(sp.diff(g, s)) for s in self.symbols] for g in grads])
        return self._cache["hessian"]


def sanitize(expr: Any) -> Any:
    """Give SymPy's unevaluated derivatives of step functions their almost-everywhere value 0.

    d floor(u)/dx and the DiracDelta from d sign(u)/dx are 0 wherever the function is
    differentiable; at the jump itself the reference's kink check reports ``undefined``.
    """
    import sympy as sp

    def is_step_derivative(e: Any) -> bool:
        return isinstance(e, sp.Derivative) and isinstance(e.expr, (sp.floor, sp.ceiling))

    def step(e: Any) -> Any:
        # Heaviside (from d Max/dx) as a plain Piecewise: printers otherwise rewrite it through
        # SymPy's simplifier, which costs seconds per expression
        at_zero = e.args[1] if len(e.args) > 1 else sp.Rational(1, 2)
        return sp.Piecewise((sp.Float(1.0), e.args[0] > 0), (sp.Float(0.0), e.args[0] < 0), (sp.Float(at_zero), True))

    # d floor(u(x))/dx comes as Subs(Derivative(floor(ξ), ξ), ξ, u(x))·u'(x): the Subs is 0 as well
    expr = expr.replace(lambda e: isinstance(e, sp.Subs) and is_step_derivative(e.expr), lambda e: sp.Integer(0))
    expr = expr.replace(is_step_derivative, lambda e: sp.Integer(0))
    expr = expr.replace(lambda e: isinstance(e, sp.Heaviside), step)
    return expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.Integer(0))


@per_case
def trace(case: Case) -> SymbolicTrace:
    """Trace ``case`` with SymPy (cached per case); raises Skip past the budgets, or the case's error."""
    with _depth_budget():
        return _trace(case)


@contextlib.contextmanager
def sign_heuristics_off() -> Iterator[None]:
    """Build SymPy expressions without its sign heuristic for sums (``exprtools._monotonic_sign``), and make
    Python's ``abs()`` of an expression an unevaluated ``Abs``.

    Every ``Pow``, ``Abs`` or quotient SymPy builds over a sum of real symbols asks whether the sum is positive,
    negative or infinite, and the heuristic answers by expanding the sum's numerator and denominator, walking the
    tree as a tree: on an unrolled loop, whose expression shares each step's subexpressions, that walk doubles
    with every step (a charged particle's Euler steps: 8 s at 7 steps, minutes at 9). ``Abs``'s own evaluation
    expands its argument (seconds for a few Newton steps). Without them those questions are answered "not
    known", which only keeps SymPy from simplifying (|u| stays |u| where it could prove u > 0): the expression
    and its derivative are the same function. Measured in ``benchmarks/symbolic_scale.py --deep``."""
    from sympy.core import exprtools
    from sympy.core.expr import Expr

    original, original_abs = exprtools._monotonic_sign, Expr.__abs__
    exprtools._monotonic_sign = _sign_not_known
    Expr.__abs__ = _unevaluated_abs  # type: ignore[method-assign]
    try:
        yield
    finally:
        exprtools._monotonic_sign = original
        Expr.__abs__ = original_abs  # type: ignore[method-assign]


def _sign_not_known(expr: Any) -> None:
    return None


def _unevaluated_abs(expr: Any) -> Any:
    import sympy as sp

    # a number's absolute value is cheap to evaluate (and keeps constants plain numbers)
    return sp.Abs(expr) if isinstance(expr, sp.Number) else sp.Abs(expr, evaluate=False)


@contextlib.contextmanager
def _depth_budget() -> Iterator[None]:
    """SymPy's algorithms recurse along the expression: one nested deeper than Python's recursion limit
    (a long chain of steps, each applied to the last) is past a budget, not an error of the case."""
    try:
        yield
    except RecursionError:
        raise OverBudget(f"the function's expression nests deeper than SymPy's recursive algorithms reach "
                         f"(Python's recursion limit of {sys.getrecursionlimit()}; a long chain of steps each "
                         "applied to the last); the symbolic/symengine variant differentiates it without "
                         "recursing") from None


def _symbolic_inputs(case: Case) -> tuple[list[Any], list[Any], np.ndarray]:
    """(SymPy symbols, the case's arguments as object arrays of them, the float64 point), within the input budget."""
    import sympy as sp

    if case.size > MAX_INPUTS:
        raise OverBudget(f"{case.size} scalar inputs exceed the symbolic budget of {MAX_INPUTS} "
                         "(diffbench.engines.symbolic.MAX_INPUTS): one derivative per input gets too costly")
    return _symbol_arrays(case, lambda name: sp.Symbol(name, real=True))


def _symbol_arrays(case: Case, make: Callable[[str], Any]) -> tuple[list[Any], list[Any], np.ndarray]:
    """(one symbol per scalar input made by ``make(name)``, the case's arguments as object arrays of them, the
    float64 point): input ``x`` of one element is ``x``, of several ``x_0``, ``x_1``, ... in C order."""
    from ..namespaces import ObjectArray

    symbols, args = [], []
    for name, value in case.inputs.items():
        flat = [make(f"{name}_{i}" if value.size > 1 else name) for i in range(value.size)]
        symbols.extend(flat)
        array = np.empty(value.shape, dtype=object)
        array.reshape(-1)[:] = flat
        args.append(array.view(ObjectArray))
    point = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in case.inputs.values()])
    return symbols, args, point


def _trace(case: Case) -> SymbolicTrace:
    import sympy as sp

    from ..branching import deciding_at
    from ..namespaces import sympy_namespace, tracing_at

    predicted = _symengine_count(case)
    if predicted is not None and predicted > SWELL_MARGIN * MAX_OPS:
        raise OverBudget(f"SymEngine's trace of the same function counts {predicted} operations, more than "
                         f"{SWELL_MARGIN:g} times the symbolic budget of {MAX_OPS} "
                         "(diffbench.engines.symbolic.MAX_OPS): expression swell; SymPy's own trace, which would "
                         "take far longer to reach that count, is not started (diffbench.engines.symbolic."
                         "SWELL_MARGIN)")
    start = time.perf_counter()
    symbols, args, point = _symbolic_inputs(case)
    with tracing_at({s: sp.Float(float(v)) for s, v in zip(symbols, point)}), _trace_time_limit(case), \
            deciding_at({s: sp.Rational(float(v)) for s, v in zip(symbols, point)}) as guards, \
            sign_heuristics_off():
        out = case.func(*args, xp=sympy_namespace())
    check_scalar(case, out, "SymPy namespace")
    value = np.asarray(out, dtype=object).reshape(-1)[0]
    try:
        f = sp.sympify(value, strict=True)
    except (sp.SympifyError, TypeError):
        f = None
    if not isinstance(f, sp.Expr):
        raise TypeError(f"case {case.name!r} returned {value!r} ({type(value).__name__}), not a number")
    # the tree's size, counted once per shared node and first (free_symbols and count_ops walk every path): an
    # expression whose tree doubles at every step (40 steps of x ← 3.9x(1 − x)) is measured in a blink
    tree = tree_ops(f, MAX_OPS)
    if tree > MAX_OPS:
        raise OverBudget(f"the function's expression has more than {MAX_OPS} operations (counted while walking "
                         f"its tree, stopped at the budget), over the symbolic budget of {MAX_OPS} "
                         "(diffbench.engines.symbolic.MAX_OPS): expression swell")
    if f.free_symbols - set(symbols):
        raise TypeError(f"case {case.name!r} returned {value!r} ({type(value).__name__}), not a number")
    ops = sp.count_ops(f)
    if ops > MAX_OPS:
        raise OverBudget(f"the function's expression has {ops} operations, over the symbolic budget of {MAX_OPS} "
                         "(diffbench.engines.symbolic.MAX_OPS): expression swell")
    return SymbolicTrace(case, symbols, f, time.perf_counter() - start, int(ops), guards=list(guards))


#: a SymPy trace (the case run on symbols) that runs longer than this is stopped and the row skipped: SymPy's
#: constructors can spend minutes in assumption queries on a large unrolled expression before any budget can
#: count it (the in-process API's own time budget, where one is running, takes precedence)
MAX_TRACE_S = 30.0
#: before SymPy traces a case, SymEngine traces it (a fraction of the time) for at most ``PROBE_S`` seconds (never
#: past MAX_TRACE_S; a trace it finishes is kept for the ``symengine`` variant); where SymEngine counts more than
#: ``SWELL_MARGIN`` × ``MAX_OPS`` operations, the SymPy trace is not started: it would end at MAX_OPS or
#: MAX_TRACE_S. The margin covers the two libraries' different automatic simplifications (their counts agree
#: within a few percent on gradbench's cases: 296 against 303 for llsq at n = 16). Measured on 2 cores: llsq at
#: n = 256 (66,176 operations) traces in SymEngine in a few seconds, where SymPy ran past 30 s
SWELL_MARGIN = 1.5
PROBE_S = 30.0


def _symengine_count(case: Case) -> int | None:
    """The operations SymEngine counts in ``case``'s expression (traced within ``PROBE_S``), or None where
    SymEngine is missing, cannot trace the case, or takes longer: then there is no prediction."""
    from ..errors import UnitTimeout

    try:
        with _trace_time_limit(case, min(PROBE_S, MAX_TRACE_S)):
            return _symengine_function(case)[2]
    except UnitTimeout:  # the measurement's own budget ended: not a missing prediction
        raise
    except Exception:  # noqa: BLE001 - no prediction; SymPy's trace then decides, under its own limits
        return None


def tree_ops(expr: Any, limit: int) -> int:
    """The number of operations in ``expr`` as a tree (one per argument joined by ``+``/``×`` beyond the first,
    one per power and function), each shared subexpression counted as often as the tree repeats it, but
    walked once; stops as soon as the count passes ``limit`` (returns a number above it)."""
    sizes: dict[int, int] = {}
    keep: list[Any] = []  # ids stay valid while their objects live
    stack: list[tuple[Any, bool]] = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        args = getattr(node, "args", ())
        if not ready:
            stack.append((node, True))
            stack.extend((a, False) for a in args if id(a) not in sizes)
            continue
        local = (len(args) - 1 if getattr(node, "is_Add", False) or getattr(node, "is_Mul", False)
                 else 0 if not args else 1)
        sizes[key] = min(local + sum(sizes[id(a)] for a in args), limit + 1)
        keep.append(node)
        if sizes[key] > limit:
            return limit + 1
    return sizes[id(expr)]


class _TraceTooLong(Exception):
    pass


@contextlib.contextmanager
def _trace_time_limit(case: Case, seconds: float | None = None) -> Iterator[None]:
    """Stop a SymPy trace past ``MAX_TRACE_S`` (or ``seconds``) with OverBudget (main thread). Where an outer timer
    is running (the in-process API's per-measurement budget) and ends later, it is suspended while the trace runs
    and re-armed with what is left of it afterwards; where it ends first, it decides."""
    limit = MAX_TRACE_S if seconds is None else seconds
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    outer = signal.getitimer(signal.ITIMER_REAL)[0]
    if 0 < outer <= limit:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        while frame is not None:  # an import in progress is never cut short: wait for it
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                signal.setitimer(signal.ITIMER_REAL, 0.05)
                return
            frame = frame.f_back
        raise _TraceTooLong

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    except _TraceTooLong:
        raise OverBudget(f"tracing the case with SymPy ran past {limit:g} s "
                         "(diffbench.engines.symbolic.MAX_TRACE_S) before its expression could be counted: "
                         "expression swell (SymPy's constructors query assumptions on every new node)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:  # the outer budget goes on from where it was
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))


# --------------------------------------------------------------------------- SymEngine
@dataclass
class SymEngineTrace:
    """The case as a SymEngine expression, its gradient, and compiled forms (per dtype)."""

    case: Case
    symbols: list[Any]
    f: Any
    gradient: list[Any]
    trace_s: float
    diff_s: float
    f_ops: int
    _cache: dict[str, Any] = field(default_factory=dict)


class SymEngineLacks(Exception):
    """SymEngine cannot represent or differentiate this case faithfully; the message says what."""


@per_case
def symengine_trace(case: Case) -> SymEngineTrace:
    """Trace and differentiate ``case`` with SymEngine (cached per case).

    Raises Skip past the ``symengine`` budgets, SymEngineLacks where the SymPy path must be used
    instead, or the case's own error.
    """
    symbols, f, ops, trace_s = _symengine_function(case)
    if ops > SYMENGINE_MAX_OPS:
        raise Skip(f"the function's expression has {ops} operations, over the SymEngine budget of "
                   f"{SYMENGINE_MAX_OPS} (diffbench.engines.symbolic.SYMENGINE_MAX_OPS): expression swell")
    start = time.perf_counter()
    gradient = _se_gradient(f, symbols)
    diff_s = time.perf_counter() - start
    _check_evaluated(gradient)
    return SymEngineTrace(case, symbols, f, gradient, trace_s, diff_s, ops)


def _symengine_function(case: Case) -> tuple[list[Any], Any, int, float]:
    """``case`` traced by SymEngine: (symbols, expression, its operations as a tree, seconds). Kept on the case
    once it succeeds (the SymPy trace's prediction and the ``symengine`` variant share it); raises Skip past
    SYMENGINE_MAX_INPUTS, SymEngineLacks where the SymPy path must be used, or the case's own error."""
    import symengine as se

    from ..namespaces import UnsupportedFunction, symengine_namespace, tracing_at

    kept = case.__dict__.get("_symengine_function")
    if kept is not None:
        return kept
    if case.size > SYMENGINE_MAX_INPUTS:
        raise Skip(f"{case.size} scalar inputs exceed the SymEngine budget of {SYMENGINE_MAX_INPUTS} "
                   "(diffbench.engines.symbolic.SYMENGINE_MAX_INPUTS)")
    start = time.perf_counter()
    symbols, args, point = _symbol_arrays(case, se.Symbol)
    try:
        # argmin/argmax are decided by the values at the point, as in the SymPy trace
        with tracing_at({s: se.RealDouble(float(v)) for s, v in zip(symbols, point)}):
            out = case.func(*args, xp=symengine_namespace())
    except UnsupportedFunction as exc:
        raise SymEngineLacks(str(exc)) from exc
    except TypeError as exc:
        raise SymEngineLacks(_symengine_type_error(exc)) from exc
    check_scalar(case, out, "SymEngine namespace")
    value = np.asarray(out, dtype=object).reshape(-1)[0]
    try:
        f = se.sympify(value)
    except (se.SympifyError, TypeError, ValueError) as exc:
        raise SymEngineLacks(f"SymEngine cannot represent {value!r}") from exc
    if not isinstance(f, se.Expr) or (f.free_symbols - set(symbols)):
        raise SymEngineLacks(f"the case returned {value!r} ({type(value).__name__}) in SymEngine")
    kept = (symbols, f, count_ops([f]), time.perf_counter() - start)
    case.__dict__["_symengine_function"] = kept
    return kept


def _symengine_type_error(exc: TypeError) -> str:
    """Why a case that raised TypeError on SymEngine symbols goes to SymPy: SymEngine's relations have no truth
    value and cannot be given one (its classes are compiled), so an `if`/`while` on a traced value fails there,
    while the SymPy trace decides it at the point. A TypeError of the case's own is raised again by SymPy."""
    from ..branching import traceback_line

    where = traceback_line(exc.__traceback__)
    return (f"SymEngine cannot decide a comparison of traced values{' at ' + where if where else ''} ({exc}); "
            "the SymPy trace decides each one by its value at the point")


def _se_gradient(f: Any, symbols: list[Any]) -> list[Any]:
    """d f / d symbol for every symbol. A sum is differentiated term by term, each term only by the
    symbols it contains: ``f.diff(s)`` would walk all of f once per symbol (quadratic in n)."""
    import symengine as se

    terms = f.args if isinstance(f, se.Add) else (f,)
    containing: dict[Any, list[Any]] = {s: [] for s in symbols}
    for term in terms:
        for s in term.free_symbols:
            if s in containing:
                containing[s].append(term)
    return [se.Add(*[t.diff(s) for t in containing[s]]) for s in symbols]


def _check_evaluated(exprs: list[Any]) -> None:
    """Raise SymEngineLacks where SymEngine left a derivative unevaluated (a function it cannot differentiate)."""
    import symengine as se

    # each shared subexpression is visited once (Basic.atoms walks every path of the tree: minutes on an
    # unrolled loop whose tree doubles per step)
    seen: set[Any] = set()
    stack = list(exprs)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node, (se.Derivative, se.Subs)):
            raise SymEngineLacks(f"SymEngine leaves {node} unevaluated")
        stack.extend(node.args)


def count_ops(exprs: list[Any], distinct: bool = False) -> int:
    """Operations in SymEngine expressions, by the rules of ``sympy.count_ops``.

    One operation per ``+``/``−`` between terms, ``×`` between factors, ``÷`` for a denominator,
    power, function and negation (a negative coefficient or rational); comparisons inside a
    Piecewise cost nothing, as in SymPy. Repeated subexpressions are counted every time they
    occur (the tree, like count_ops), or once each when ``distinct`` (the DAG).
    """
    parts: dict[Any, tuple[int, list[Any]]] = {}
    if distinct:
        seen: set[Any] = set()
        stack = list(exprs)
        total = 0
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            own, children = parts[node] if node in parts else _node_ops(node)
            total += own
            stack.extend(children)
        return total
    memo: dict[Any, int] = {}
    for root in exprs:
        stack2: list[tuple[Any, bool]] = [(root, False)]
        while stack2:
            node, expanded = stack2.pop()
            if node in memo:
                continue
            if node not in parts:
                parts[node] = _node_ops(node)
            own, children = parts[node]
            if expanded:
                memo[node] = own + sum(memo[c] for c in children)
            else:
                stack2.append((node, True))
                stack2.extend((c, False) for c in children if c not in memo)
    return int(sum(memo[r] for r in exprs))


def _node_ops(a: Any) -> tuple[int, list[Any]]:
    """(operations of this node itself, the subexpressions still to count), as sympy.count_ops sees it."""
    import symengine as se

    from symengine.lib.symengine_wrapper import BooleanAtom, Constant

    if isinstance(a, se.Rational):  # Integer included
        if a == 1:
            return 0, []
        return int(a < 0) + int(not isinstance(a, se.Integer)), []
    if isinstance(a, (se.Number, se.Symbol, Constant, BooleanAtom)):
        return 0, []
    if isinstance(a, se.Add):
        ops, negatives, children = len(a.args) - 1, 0, []
        for term in a.args:
            if _coeff_isneg(term):
                negatives += 1
                children.append(-term)
            else:
                children.append(term)
        return ops + int(negatives == len(a.args)), children
    if isinstance(a, se.Mul):
        ops = 0
        if _coeff_isneg(a):
            ops, a = 1, -a
            if not isinstance(a, se.Mul):
                return ops, [a]
        numer, denom = [], []
        for factor in a.args:
            if isinstance(factor, se.Pow) and isinstance(factor.args[1], se.Number) and factor.args[1] < 0:
                denom.append(factor.args[0] ** -factor.args[1])
            elif isinstance(factor, se.Rational) and not isinstance(factor, se.Integer):
                p, q = factor.get_num_den()
                numer.append(p)
                denom.append(q)
            else:
                numer.append(factor)
        n, d = se.Mul(*numer), se.Mul(*denom)
        if isinstance(n, se.Integer):
            return ops + 1 + int(n < 0), [d]
        if d != 1:
            return ops + 1, ([] if isinstance(d, se.Integer) else [d]) + [n]
        return ops + len(a.args) - 1, list(a.args)
    if isinstance(a, se.Pow):
        base, exponent = a.args
        if exponent == -1:
            return 1, [base]
        return 1, [exponent] if base == se.E else [base, exponent]
    if isinstance(a, se.Piecewise):
        return 1, list(a.args)
    if isinstance(a, se.Function):
        return 1, list(a.args)
    return 0, list(a.args)


def _coeff_isneg(a: Any) -> bool:
    import symengine as se

    if isinstance(a, se.Number):
        return bool(a < 0)
    return isinstance(a, se.Mul) and any(isinstance(f, se.Number) and f < 0 for f in a.args[:1])


def _se_backend(dtype: str) -> tuple[str, dict[str, Any]]:
    """The Lambdify backend and options for ``dtype``; Skip where float32 cannot be computed as float32."""
    import symengine as se

    if se.have_llvm:
        # opt_level 0: LLVM's optimisations cost seconds at n = 1000 and gain little once CSE has run
        return "llvm", {"opt_level": 0, "dtype": np.dtype(dtype).type}
    if dtype != "float64":
        raise Skip(f"this SymEngine has no LLVM backend, and its lambda backend computes in float64 only: "
                   f"a {dtype} row would not compute in {dtype}")
    return "lambda", {}


def _se_compile(symbols: list[Any], exprs: list[Any], dtype: str, cse: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A function of the flat input vector returning ``exprs`` evaluated in ``dtype``, compiled with
    symengine.Lambdify in blocks of SYMENGINE_BLOCK expressions, each a function of only the inputs
    it contains (CSE and LLVM compilation grow faster than linearly with one function's size)."""
    import symengine as se

    backend, options = _se_backend(dtype)
    index = {s: i for i, s in enumerate(symbols)}
    blocks = []
    for start in range(0, len(exprs), SYMENGINE_BLOCK):
        part = exprs[start:start + SYMENGINE_BLOCK]
        ops = count_ops(part, distinct=True)
        if ops > SYMENGINE_MAX_COMPILE_OPS:
            raise OverBudget(f"{len(part)} expressions to compile with {ops} distinct operations, over SymEngine's "
                             f"compile budget of {SYMENGINE_MAX_COMPILE_OPS} per block "
                             "(diffbench.engines.symbolic.SYMENGINE_MAX_COMPILE_OPS): LLVM's time grows faster than "
                             "linearly with one function's size")
        # Lambdify needs at least one argument: a block of constants takes the first input
        used = np.array(sorted(index[s] for s in se.DenseMatrix(len(part), 1, part).free_symbols) or [0],
                        dtype=np.intp)
        blocks.append((used, se.Lambdify([symbols[i] for i in used], part, cse=cse, backend=backend, **options)))
    np_dtype = np.dtype(dtype)
    size = len(exprs)

    def evaluate(point: np.ndarray) -> np.ndarray:
        out = np.empty(size, dtype=np_dtype)
        for k, (used, block) in enumerate(blocks):
            out[k * SYMENGINE_BLOCK:(k + 1) * SYMENGINE_BLOCK] = np.ravel(block(point[used]))
        return out

    return evaluate


def _se_compile_sum(symbols: list[Any], f: Any, dtype: str) -> Callable[[np.ndarray], Any]:
    """``f`` compiled (no CSE, as the SymPy variants compile f, unless its tree repeats shared subexpressions
    so often that code without CSE is many times larger: an unrolled loop whose tree doubles per step); a
    long sum as partial sums of SYMENGINE_BLOCK terms each, added in ``dtype``."""
    import symengine as se

    terms = list(f.args) if isinstance(f, se.Add) and len(f.args) > SYMENGINE_BLOCK else [f]
    parts = [se.Add(*terms[i:i + SYMENGINE_BLOCK]) for i in range(0, len(terms), SYMENGINE_BLOCK)]
    shared = count_ops([f]) > 4 * max(count_ops([f], distinct=True), 1)
    fn = _se_compile(symbols, parts, dtype, cse=shared)
    return lambda point: fn(point).sum()


def _se_point(case: Case, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate([v.ravel() for v in case.inputs.values()]).astype(dtype))


def _lambdified(tr: SymbolicTrace, variant: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The gradient and the function lambdified to NumPy (with CSE for ``numpy``, without for ``numpy-nocse``),
    compiled once per case and variant: the generated code does not depend on the dtype."""
    import sympy as sp

    key = f"lambdify-{variant}"
    if key not in tr._cache:
        shared = (lambda exprs: _shared_cse(tr)) if variant == "numpy" else False
        tr._cache[key] = (sp.lambdify([tr.symbols], tr.gradient, modules="numpy", cse=shared),
                          sp.lambdify([tr.symbols], tr.f, modules="numpy"))
    return tr._cache[key]


def _shared_cse(tr: SymbolicTrace) -> tuple[list[tuple[Any, Any]], list[Any]]:
    """SymPy's common-subexpression elimination of the gradient (replacements, reduced components), found once
    per case and shared by the variants that compile it with CSE and by the operation count: on a large
    gradient (BA's 37 components of 2,873 shared operations) one ``cse`` takes seconds."""
    import sympy as sp

    if "cse" not in tr._cache:
        tr._cache["cse"] = sp.cse(tr.gradient, list=False)
    return tr._cache["cse"]


def _check_tree_size(grads: list[Any]) -> None:
    """Skip (OverBudget) a gradient whose components, as trees, have more than ``MAX_NOCSE_OPS`` operations."""
    total = 0
    for g in grads:
        total += tree_ops(g, MAX_NOCSE_OPS - total)
        if total > MAX_NOCSE_OPS:
            raise OverBudget(f"the gradient without common-subexpression elimination has more than {MAX_NOCSE_OPS} "
                             "operations as a tree (counted, stopped at the budget), over the numpy-nocse "
                             f"compile budget of {MAX_NOCSE_OPS} (diffbench.engines.symbolic.MAX_NOCSE_OPS): "
                             "expression swell; the numpy variant compiles it with CSE")


def numpy_gradient(case: Case, variant: str = "numpy") -> Callable[..., Any]:
    """SymPy's gradient of ``case`` lambdified to NumPy (``variant`` numpy or numpy-nocse), the function a row of
    that variant was timed on: called with the flat point, it returns the components."""
    return _lambdified(trace(case), variant)[0]


class SymbolicEngine:
    """SymPy ``diff`` then ``lambdify``; variants differ in what the derivative is compiled to."""

    name = "symbolic"
    info = EngineInfo(variants=("numpy", "numpy-nocse", "tensorflow", "symengine"), default_variant="numpy",
                      order2_variants=("numpy", "symengine"), scaling_variants=("numpy", "numpy-nocse", "symengine"),
                      run_scaling_variants=("numpy", "symengine"), max_hessian_inputs=SYMENGINE_MAX_HESSIAN_INPUTS,
                      budget_fallback={"numpy": "symengine"}, default=True)

    def variants(self) -> tuple[str, ...]:
        return self.info.variants

    def devices(self) -> list[str]:
        return ["CPU"]

    def prepare(self, case: Case, variant: str, dtype: str, device: str = "CPU") -> Prepared:
        import sympy as sp

        if variant == "symengine":
            try:
                return _symengine_variant(case, dtype)
            except SymEngineLacks as exc:
                try:
                    fallback = self.prepare(case, "numpy", dtype, device)
                except Skip as skip:
                    raise Skip(_fallback_skip(exc, skip)) from None
                guards = fallback.info.get("note")
                fallback.info["note"] = f"{SYMENGINE_FALLBACK}: {exc}" + (f"; {guards}" if guards else "")
                return fallback
        with _depth_budget():
            return self._prepare_sympy(case, variant, dtype)

    def _prepare_sympy(self, case: Case, variant: str, dtype: str) -> Prepared:
        import sympy as sp

        if output_shape(case):
            return _sympy_jacobian(case, variant, dtype)
        tr = trace(case)
        _check_guards_at(tr, case, dtype)
        grads = tr.gradient
        start = time.perf_counter()
        if variant in ("numpy", "numpy-nocse"):
            if variant == "numpy-nocse":
                _check_tree_size(grads)
            fn, f_fn = _lambdified(tr, variant)
            point = list(np.concatenate([v.ravel() for v in case.inputs.values()]).astype(dtype))
            np_dtype = np.dtype(dtype)

            def gradient() -> dict[str, np.ndarray]:
                return unflatten(_real(fn(point), np_dtype), case.inputs)

            timed: Callable[[], Any] = lambda: fn(point)  # noqa: E731
            f_timed: Callable[[], Any] = lambda: f_fn(point)  # noqa: E731
        elif variant == "tensorflow":
            gradient, timed, f_timed = _tensorflow_variant(case, tr, grads, dtype)
        else:
            raise ValueError(f"unknown symbolic variant {variant!r}; known: {self.variants()}")
        lambdify_s = time.perf_counter() - start
        info = {"expr_ops": tr.f_ops, "grad_ops": _count_ops(tr, grads, cse=(variant != "numpy-nocse"))}
        info.update(_guard_note(tr))
        return Prepared(gradient=gradient, timed=timed, f_timed=f_timed,
                        prepare_s=tr.trace_s + tr.diff_s + lambdify_s, info=info,
                        f_key="numpy" if variant.startswith("numpy") else None)

    def hessian(self, case: Case, variant: str, dtype: str) -> np.ndarray:
        import sympy as sp

        if output_shape(case):
            raise Skip(f"Hessian of a vector output (shape {output_shape(case)}) is not formed: second-order rows "
                       "are for scalar cases")
        if variant == "symengine":
            try:
                return _symengine_hessian(case, dtype)
            except SymEngineLacks as exc:
                try:  # the SymPy Hessian, under its own budget
                    return self.hessian(case, "numpy", dtype)
                except Skip as skip:
                    raise Skip(_fallback_skip(exc, skip)) from None
        with _depth_budget():
            return self._hessian_sympy(case, dtype)

    def _hessian_sympy(self, case: Case, dtype: str) -> np.ndarray:
        import sympy as sp

        tr = trace(case)
        _check_guards_at(tr, case, dtype)
        cost = hessian_cost(tr)
        if cost > MAX_HESSIAN_COST:
            raise OverBudget(f"the Hessian's predicted cost {cost} (Σ over the first derivatives of their size × "
                             f"the inputs they depend on) exceeds SymPy's Hessian budget of {MAX_HESSIAN_COST} "
                             f"(diffbench.engines.symbolic.MAX_HESSIAN_COST); the symbolic/symengine variant forms "
                             f"it up to {SYMENGINE_MAX_HESSIAN_INPUTS} inputs")
        if "lambdify-hessian" not in tr._cache:
            tr._cache["lambdify-hessian"] = sp.lambdify([tr.symbols], tr.hessian(), modules="numpy", cse=True)
        fn = tr._cache["lambdify-hessian"]
        point = list(np.concatenate([v.ravel() for v in case.inputs.values()]).astype(dtype))
        return _real(fn(point), np.dtype(dtype))


def _check_guards_at(tr: SymbolicTrace, case: Case, dtype: str) -> None:
    """Raise Skip where a guard the trace decided at the point is decided the other way at the point as ``dtype``
    holds it (its rounding of the inputs): the traced formula is then another branch's there."""
    if not tr.guards or np.dtype(dtype) == np.float64:
        return
    import sympy as sp

    from ..branching import flips

    values = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in case.inputs.values()]).astype(dtype)
    flipped = flips(tr.guards, {s: sp.Rational(float(v)) for s, v in zip(tr.symbols, values)})
    if flipped is not None:
        raise Skip(f"the guard at {flipped.where} is decided the other way at the {dtype} rounding of the point than "
                   "at the point itself, where the case was traced: the traced formula is another branch's there")


def _guard_note(tr: SymbolicTrace) -> dict[str, str]:
    """The row's note on the value branches the trace decided at the point (none where it decided none)."""
    from ..branching import describe

    return {"note": describe(tr.guards)} if tr.guards else {}


def _fallback_skip(lacks: Exception, skip: Skip) -> str:
    """A symengine row's skip where SymEngine handed the case to SymPy and SymPy's budget refused it."""
    return (f"SymEngine cannot trace this case ({lacks}), so the symengine row fell back to SymPy, and SymPy "
            f"skipped it: {skip}")


def hessian_cost(tr: SymbolicTrace) -> int:
    """The predicted cost of SymPy's Hessian of a traced case (see ``MAX_HESSIAN_COST``)."""
    if "hessian_cost" not in tr._cache:
        import sympy as sp

        tr._cache["hessian_cost"] = int(sum(sp.count_ops(g) * len(g.free_symbols) for g in tr.gradient))
    return tr._cache["hessian_cost"]


#: how a ``symengine`` row that used the SymPy path begins its note
SYMENGINE_FALLBACK = "differentiated and compiled with SymPy, as the numpy variant (SymEngine fallback)"


def _symengine_variant(case: Case, dtype: str) -> Prepared:
    """The ``symengine`` variant; raises SymEngineLacks where the SymPy path must be used."""
    if output_shape(case):
        return _symengine_jacobian(case, dtype)
    tr = symengine_trace(case)
    start = time.perf_counter()
    key = f"compiled-{dtype}"
    if key not in tr._cache:
        tr._cache[key] = (_se_compile(tr.symbols, tr.gradient, dtype, cse=True),
                          _se_compile_sum(tr.symbols, tr.f, dtype))
    fn, f_fn = tr._cache[key]
    compile_s = time.perf_counter() - start
    point = _se_point(case, dtype)

    def gradient() -> dict[str, np.ndarray]:
        return unflatten(fn(point), case.inputs)

    if "grad_ops" not in tr._cache:
        tr._cache["grad_ops"] = count_ops(tr.gradient, distinct=True)
    info = {"expr_ops": tr.f_ops, "grad_ops": tr._cache["grad_ops"]}
    return Prepared(gradient=gradient, timed=lambda: fn(point), f_timed=lambda: f_fn(point),
                    prepare_s=tr.trace_s + tr.diff_s + compile_s, info=info)


def symengine_gradient(case: Case, dtype: str) -> np.ndarray:
    """The flat gradient SymEngine's compiled formula gives at the case's point in ``dtype`` (compiled once per
    case and dtype); raises SymEngineLacks where the symengine variant uses SymPy instead."""
    return flatten(_symengine_variant(case, dtype).gradient(), list(case.inputs))


def _symengine_hessian(case: Case, dtype: str) -> np.ndarray:
    """The (N, N) Hessian differentiated and compiled with SymEngine; raises Skip past
    SYMENGINE_MAX_HESSIAN_INPUTS and SymEngineLacks where the SymPy path must be used."""
    import symengine as se

    if case.size > SYMENGINE_MAX_HESSIAN_INPUTS:
        raise Skip(f"{case.size} inputs exceed the SymEngine Hessian budget of {SYMENGINE_MAX_HESSIAN_INPUTS}")
    tr = symengine_trace(case)
    if "hessian" not in tr._cache:
        # the second derivatives hold the first ones' work and more: a gradient over the compile budget is not
        # differentiated again (differentiating it alone can outlast the run's --timeout)
        gradient_ops = count_ops(list(tr.gradient), distinct=True)
        if gradient_ops > SYMENGINE_MAX_COMPILE_OPS:
            raise OverBudget(f"the gradient already has {gradient_ops} distinct operations, over SymEngine's compile "
                             f"budget of {SYMENGINE_MAX_COMPILE_OPS} (diffbench.engines.symbolic."
                             "SYMENGINE_MAX_COMPILE_OPS); its Hessian, larger still, is not formed")
        zero = se.Integer(0)
        rows = []
        for g in tr.gradient:
            present = g.free_symbols  # every other second derivative of this row is 0
            rows.append([g.diff(s) if s in present else zero for s in tr.symbols])
        entries = [e for row in rows for e in row]
        _check_evaluated(entries)
        tr._cache["hessian"] = entries
    key = f"hessian-{dtype}"
    if key not in tr._cache:
        tr._cache[key] = _se_compile(tr.symbols, tr._cache["hessian"], dtype, cse=True)
    n = len(tr.symbols)
    return tr._cache[key](_se_point(case, dtype)).reshape(n, n)


def scale_columns(case: Case, variant: str, prepared: Prepared) -> dict[str, int]:
    """The scaling study's expression sizes for a prepared row: ``expr_ops``, ``grad_ops_cse`` and
    ``grad_ops_nocse`` (SymPy's counts, or for ``symengine`` :func:`count_ops`'s; see the module docstring)."""
    if variant == "symengine" and "note" not in prepared.info:
        tr = symengine_trace(case)
        if "grad_ops_tree" not in tr._cache:
            tr._cache["grad_ops_tree"] = count_ops(tr.gradient)
        return dict(expr_ops=tr.f_ops, grad_ops_cse=prepared.info["grad_ops"], grad_ops_nocse=tr._cache["grad_ops_tree"])
    tr = trace(case)
    return dict(expr_ops=tr.f_ops, grad_ops_cse=_count_ops(tr, tr.gradient, True),
                grad_ops_nocse=_count_ops(tr, tr.gradient, False))


def _real(values: Any, dtype: np.dtype) -> np.ndarray:
    """Evaluated derivatives as real numbers; where SymPy left the real domain (the square root
    of a negative number is imaginary in SymPy, NaN in NumPy and TensorFlow), NaN."""
    array = np.asarray(values, dtype=complex if any(isinstance(v, complex) for v in np.ravel(np.asarray(values, dtype=object)))
                       else None)
    if np.iscomplexobj(array):
        array = np.where(array.imag == 0, array.real, np.nan)
    return array.astype(dtype)


def _count_ops(tr: SymbolicTrace, grads: list[Any], cse: bool) -> int:
    """Expression size of the gradient, after common-subexpression elimination when ``cse``."""
    import sympy as sp

    key = f"ops-{cse}"
    if key not in tr._cache:
        if cse:
            shared = isinstance(tr, SymbolicTrace) and grads is tr.gradient
            replacements, reduced = _shared_cse(tr) if shared else sp.cse(grads)
            tr._cache[key] = int(sum(sp.count_ops(e) for _, e in replacements) + sum(sp.count_ops(e) for e in reduced))
        else:
            tr._cache[key] = int(sum(sp.count_ops(g) for g in grads))
    return tr._cache[key]


def _tensorflow_variant(case: Case, tr: SymbolicTrace, grads: list[Any], dtype: str):
    """The symbolic gradient compiled to a TensorFlow graph (so it runs where TensorFlow runs)."""
    import sympy as sp
    from sympy.printing.tensorflow import TensorflowPrinter

    from ..namespaces import tensorflow_namespace
    from ..quiet import import_tensorflow

    tf = import_tensorflow()  # its start-up lines are silenced unless --verbose

    tensorflow_namespace(dtype)  # NumPy behaviour: Python constants in the printed code take the inputs' dtype
    tf_dtype = tf.as_dtype(dtype)

    # SymPy's TensorFlow printer prints expm1, log1p, log2 and log10 only by name when not
    # strict: bind those names here (Heaviside is already a Piecewise, see sanitize)
    extra = {"expm1": tf.math.expm1, "log1p": tf.math.log1p, "erf": tf.math.erf, "erfc": tf.math.erfc,
             "log2": lambda x: tf.math.log(x) / math.log(2.0), "log10": lambda x: tf.math.log(x) / math.log(10.0)}
    def typed_where(condition: Any, a: Any, b: Any) -> Any:
        # tf.where makes Python constants float32; the branches must be in the run's dtype
        return tf.where(condition, tf.cast(a, tf_dtype), tf.cast(b, tf_dtype))

    extra["_typed_where"] = typed_where

    class Printer(TensorflowPrinter):
        def _module_format(self, fqn: str, register: bool = True) -> str:
            if fqn in ("tensorflow.where", "tensorflow.math.where"):
                return "_typed_where"
            return super()._module_format(fqn, register)

    printer = Printer({"strict": False})
    key = f"lambdify-tensorflow-{dtype}"
    if key not in tr._cache:
        # exact constants (sqrt(pi), log(2)) as decimal literals: TensorFlow would make float32 tensors of
        # the Python numbers a printed sqrt(math.pi) produces, and lose half the digits in a float64 run
        # (evaluated on the shared CSE's parts: evalf walks an expression as a tree, its parts once each)
        def numeric_cse(exprs: Any) -> tuple[list[tuple[Any, Any]], list[Any]]:
            shared = isinstance(tr, SymbolicTrace) and grads is tr.gradient  # a Jacobian's entries: their own CSE
            replacements, reduced = _shared_cse(tr) if shared else sp.cse(grads, list=False)
            return [(s, e.evalf(20)) for s, e in replacements], [g.evalf(20) for g in reduced]

        tr._cache[key] = (
            sp.lambdify([tr.symbols], grads, modules=[extra, "tensorflow"], cse=numeric_cse, printer=printer),
            sp.lambdify([tr.symbols], _evalf(tr.f), modules=[extra, "tensorflow"], printer=printer))
    fn, f_fn = tr._cache[key]
    flat = np.concatenate([v.ravel() for v in case.inputs.values()])
    point = [tf.constant(v, dtype=tf_dtype) for v in flat]

    def as_run_dtype(value: Any) -> Any:
        # a constant component (d(x/3)/dx) comes back as a Python float: converting it without a dtype would make
        # a float32 tensor and lose half its digits in a float64 run
        if isinstance(value, (int, float)):
            return tf.constant(value, dtype=tf_dtype)
        return tf.cast(tf.convert_to_tensor(value), tf_dtype)

    # eager: a traced graph of one op per scalar costs ~1 s per case to build, more than it saves
    def grad_ops() -> Any:
        return tf.stack([as_run_dtype(g) for g in fn(point)])

    def f_ops() -> Any:
        return as_run_dtype(f_fn(point))

    grad_ops()
    f_ops()

    def gradient() -> dict[str, np.ndarray]:
        return unflatten(grad_ops().numpy(), case.inputs)

    return gradient, grad_ops, f_ops


# --------------------------------------------------------------------------- Jacobians of vector outputs
#: SymPy forms a Jacobian only where its predicted cost, Σₖ count_ops(outₖ)·|inputs in outₖ| (the m·N
#: derivatives and their lambdify: per output, the expression size times the inputs it depends on), is within
#: this budget: the same work per unit as a Hessian's, so the same budget (``MAX_HESSIAN_COST``)
MAX_JACOBIAN_COST = MAX_HESSIAN_COST
#: the ``symengine`` variant forms Jacobians up to this many entries (outputs × inputs): the size of the
#: largest Hessian it forms (``SYMENGINE_MAX_HESSIAN_INPUTS``²)
SYMENGINE_MAX_JACOBIAN_ENTRIES = SYMENGINE_MAX_HESSIAN_INPUTS ** 2


@dataclass
class JacobianTrace:
    """A vector case as SymPy expressions, one per output component (flattened), and (lazily) its Jacobian."""

    case: Case
    symbols: list[Any]
    f: list[Any]
    trace_s: float
    f_ops: int
    cost: int
    _jacobian: list[Any] | None = None
    diff_s: float = 0.0
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def jacobian(self) -> list[Any]:
        """The m·N entries of ``Matrix(outputs).jacobian(symbols)``, row by row (output-major)."""
        if self._jacobian is None:
            import sympy as sp

            start = time.perf_counter()
            matrix = sp.Matrix(self.f).jacobian(self.symbols)
            self._jacobian = [sanitize(e) for e in matrix]
            self.diff_s = time.perf_counter() - start
        return self._jacobian


def _evalf(f: Any) -> Any:
    """An expression, or each of a list of them, with exact constants as 20-digit decimals."""
    return [e.evalf(20) for e in f] if isinstance(f, list) else f.evalf(20)


@per_case
def jacobian_trace(case: Case) -> JacobianTrace:
    """Trace a vector ``case`` with SymPy (cached per case); raises OverBudget past the budgets (inputs,
    operations of the outputs together, ``MAX_JACOBIAN_COST``), or the case's own error."""
    with _depth_budget():
        return _jacobian_trace(case)


def _jacobian_trace(case: Case) -> JacobianTrace:
    import sympy as sp

    from ..branching import deciding_at
    from ..namespaces import sympy_namespace, tracing_at

    start = time.perf_counter()
    symbols, args, point = _symbolic_inputs(case)
    with tracing_at({s: sp.Float(float(v)) for s, v in zip(symbols, point)}), _trace_time_limit(case), \
            deciding_at({s: sp.Rational(float(v)) for s, v in zip(symbols, point)}), sign_heuristics_off():
        out = case.func(*args, xp=sympy_namespace())
    check_output(case, out, "SymPy namespace")
    outputs = []
    for value in np.asarray(out, dtype=object).reshape(-1):
        try:
            e = sp.sympify(value, strict=True)
        except (sp.SympifyError, TypeError):
            e = None
        if not isinstance(e, sp.Expr) or e.free_symbols - set(symbols):
            raise TypeError(f"case {case.name!r} returned {value!r} ({type(value).__name__}) in an output, not a "
                            "number")
        outputs.append(e)
    total = 0
    for e in outputs:  # walked once per shared node, stopped at the budget (see _trace)
        total += tree_ops(e, MAX_OPS)
        if total > MAX_OPS:
            raise OverBudget(f"the function's outputs have more than {MAX_OPS} operations together (counted while "
                             f"walking their trees, stopped at the budget), over the symbolic budget of {MAX_OPS} "
                             "(diffbench.engines.symbolic.MAX_OPS): expression swell")
    sizes = [int(sp.count_ops(e)) for e in outputs]
    cost = int(sum(size * len(e.free_symbols) for size, e in zip(sizes, outputs)))
    if cost > MAX_JACOBIAN_COST:
        raise OverBudget(f"the Jacobian's predicted cost {cost} (Σ over the {len(outputs)} outputs of their size × "
                         f"the inputs they depend on) exceeds SymPy's Jacobian budget of {MAX_JACOBIAN_COST} "
                         "(diffbench.engines.symbolic.MAX_JACOBIAN_COST); the symbolic/symengine variant forms it "
                         f"up to {SYMENGINE_MAX_JACOBIAN_ENTRIES} entries")
    return JacobianTrace(case, symbols, outputs, time.perf_counter() - start, sum(sizes), cost)


def _split_jacobian(case: Case, flat: np.ndarray) -> dict[str, np.ndarray]:
    """Output-major Jacobian entries (m·N, inputs concatenated in parameter order) -> name -> S + I arrays."""
    shape = output_shape(case)
    matrix = np.asarray(flat).reshape(int(np.prod(shape, dtype=int)), -1)
    out, start = {}, 0
    for name, value in case.inputs.items():
        out[name] = matrix[:, start:start + value.size].reshape(shape + value.shape)
        start += value.size
    return out


def _sympy_jacobian(case: Case, variant: str, dtype: str) -> Prepared:
    """A SymPy variant (``numpy``, ``numpy-nocse``, ``tensorflow``) of a vector case."""
    import sympy as sp

    tr = jacobian_trace(case)
    entries = tr.jacobian
    start = time.perf_counter()
    np_dtype = np.dtype(dtype)
    if variant in ("numpy", "numpy-nocse"):
        key = f"lambdify-{variant}"
        if key not in tr._cache:
            tr._cache[key] = (sp.lambdify([tr.symbols], entries, modules="numpy", cse=(variant == "numpy")),
                              sp.lambdify([tr.symbols], tr.f, modules="numpy"))
        fn, f_fn = tr._cache[key]
        point = list(np.concatenate([v.ravel() for v in case.inputs.values()]).astype(dtype))

        def gradient() -> dict[str, np.ndarray]:
            return _split_jacobian(case, _real(fn(point), np_dtype))

        timed: Callable[[], Any] = lambda: fn(point)  # noqa: E731
        f_timed: Callable[[], Any] = lambda: f_fn(point)  # noqa: E731
    elif variant == "tensorflow":
        _, timed, f_timed = _tensorflow_variant(case, tr, entries, dtype)  # type: ignore[arg-type]

        def gradient() -> dict[str, np.ndarray]:
            return _split_jacobian(case, np.asarray(timed().numpy()))
    else:
        raise ValueError(f"unknown symbolic variant {variant!r}; known: {SymbolicEngine.info.variants}")
    lambdify_s = time.perf_counter() - start
    cse = variant != "numpy-nocse"
    key = f"ops-{cse}"
    if key not in tr._cache:
        if cse:
            replacements, reduced = sp.cse(entries)
            tr._cache[key] = int(sum(sp.count_ops(e) for _, e in replacements) + sum(sp.count_ops(e) for e in reduced))
        else:
            tr._cache[key] = int(sum(sp.count_ops(e) for e in entries))
    info = {"expr_ops": tr.f_ops, "grad_ops": tr._cache[key]}
    return Prepared(gradient=gradient, timed=timed, f_timed=f_timed, prepare_s=tr.trace_s + tr.diff_s + lambdify_s,
                    info=info, f_key="numpy" if variant.startswith("numpy") else None)


@dataclass
class SymEngineJacobianTrace:
    """A vector case as SymEngine expressions (one per output component, flattened) and its Jacobian entries."""

    case: Case
    symbols: list[Any]
    f: list[Any]
    jacobian: list[Any]
    trace_s: float
    diff_s: float
    f_ops: int
    _cache: dict[str, Any] = field(default_factory=dict)


@per_case
def symengine_jacobian_trace(case: Case) -> SymEngineJacobianTrace:
    """Trace a vector ``case`` with SymEngine and form its Jacobian (cached per case).

    Raises Skip past the ``symengine`` budgets (inputs, operations, ``SYMENGINE_MAX_JACOBIAN_ENTRIES``),
    SymEngineLacks where the SymPy path must be used instead, or the case's own error.
    """
    import symengine as se

    from ..namespaces import UnsupportedFunction, symengine_namespace, tracing_at

    if case.size > SYMENGINE_MAX_INPUTS:
        raise Skip(f"{case.size} scalar inputs exceed the SymEngine budget of {SYMENGINE_MAX_INPUTS} "
                   "(diffbench.engines.symbolic.SYMENGINE_MAX_INPUTS)")
    entries = case.size * int(np.prod(output_shape(case), dtype=int))
    if entries > SYMENGINE_MAX_JACOBIAN_ENTRIES:
        raise Skip(f"the Jacobian has {entries} entries, over the SymEngine budget of "
                   f"{SYMENGINE_MAX_JACOBIAN_ENTRIES} (diffbench.engines.symbolic.SYMENGINE_MAX_JACOBIAN_ENTRIES)")
    start = time.perf_counter()
    symbols, args, point = _symbol_arrays(case, se.Symbol)
    try:
        # argmin/argmax are decided by the values at the point, as in the gradient's trace
        with tracing_at({sym: se.RealDouble(float(v)) for sym, v in zip(symbols, point)}):
            out = case.func(*args, xp=symengine_namespace())
    except UnsupportedFunction as exc:
        raise SymEngineLacks(str(exc)) from exc
    check_output(case, out, "SymEngine namespace")
    outputs = []
    for value in np.asarray(out, dtype=object).reshape(-1):
        try:
            e = se.sympify(value)
        except (se.SympifyError, TypeError, ValueError) as exc:
            raise SymEngineLacks(f"SymEngine cannot represent {value!r}") from exc
        if not isinstance(e, se.Expr) or (e.free_symbols - set(symbols)):
            raise SymEngineLacks(f"the case returned {value!r} ({type(value).__name__}) in SymEngine")
        outputs.append(e)
    ops = count_ops(outputs)
    if ops > SYMENGINE_MAX_OPS:
        raise Skip(f"the function's outputs have {ops} operations together, over the SymEngine budget of "
                   f"{SYMENGINE_MAX_OPS} (diffbench.engines.symbolic.SYMENGINE_MAX_OPS): expression swell")
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    matrix = se.DenseMatrix(len(outputs), 1, outputs).jacobian(se.DenseMatrix(len(symbols), 1, symbols))
    jacobian = list(matrix)  # row by row: output-major, as _split_jacobian reads it
    diff_s = time.perf_counter() - start
    _check_evaluated(jacobian)
    return SymEngineJacobianTrace(case, symbols, outputs, jacobian, trace_s, diff_s, ops)


def _symengine_jacobian(case: Case, dtype: str) -> Prepared:
    """The ``symengine`` variant of a vector case; raises SymEngineLacks where the SymPy path must be used."""
    tr = symengine_jacobian_trace(case)
    start = time.perf_counter()
    key = f"compiled-{dtype}"
    if key not in tr._cache:
        # f without CSE, as the SymPy variants compile it, unless its trees repeat shared subexpressions often
        shared = count_ops(tr.f) > 4 * max(count_ops(tr.f, distinct=True), 1)
        tr._cache[key] = (_se_compile(tr.symbols, tr.jacobian, dtype, cse=True),
                          _se_compile(tr.symbols, tr.f, dtype, cse=shared))
    fn, f_fn = tr._cache[key]
    compile_s = time.perf_counter() - start
    point = _se_point(case, dtype)

    def gradient() -> dict[str, np.ndarray]:
        return _split_jacobian(case, fn(point))

    if "grad_ops" not in tr._cache:
        tr._cache["grad_ops"] = count_ops(tr.jacobian, distinct=True)
    info = {"expr_ops": tr.f_ops, "grad_ops": tr._cache["grad_ops"]}
    return Prepared(gradient=gradient, timed=lambda: fn(point), f_timed=lambda: f_fn(point),
                    prepare_s=tr.trace_s + tr.diff_s + compile_s, info=info)
