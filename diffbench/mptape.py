"""Reverse accumulation in mpmath arithmetic along the case's own operations.

The case is evaluated once in a namespace whose scalars are :class:`Var` nodes: each
holds its value (an ``mpf`` at the working precision ``mpmath.mp.prec``) and the exact
local partial derivatives with respect to its arguments. One backward sweep then gives

- the gradient ``Σ_paths Π ∂`` (every local partial is evaluated by its own accurate
  formula, e.g. ``sech²(a)`` for tanh, never ``1 − tanh²``, so the accumulated value
  loses accuracy only where sums of path contributions cancel), and
- its *scale* ``Σ_paths Π |∂|``: the size of the quantities that cancel in each
  component. Any method that follows the case's formula in floating point rounds
  at this scale, so verdicts compare each component's error with it.

While evaluating, every non-smooth operation records whether it *switches exactly at
the point* (``abs``/``sign`` of an exact 0, ``maximum``/``minimum``/comparisons of equal
values, ``floor``/``ceil``/``round`` at an integer, ``atan2`` on its branch cut): these
are the only places where a kink or a jump can be, so smooth points are never called
kinks, and a kink is found wherever one of these switches, whatever the scale.

The cost is a small multiple of the function's own cost at the working precision,
independent of the number of inputs.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .engines import split

__all__ = ["Var", "Switch", "Evaluation", "evaluate"]


@dataclass
class Switch:
    """A non-smooth operation whose switching argument is exactly 0 at the point."""

    op: str
    argument: "Var | None"
    #: ``jump``: the value itself is discontinuous there (sign, floor, a branch cut); ``kink``: only its slope
    kind: str
    #: the index of this operation's outcome in the evaluation's ``branches``
    position: int = -1


class _Recorder:
    """The nodes, switches and domain errors of one evaluation (module-global while it runs)."""

    def __init__(self, perturb: float = 0.0, seed: int = 0, constants: str = "float64") -> None:
        import random

        #: the dtype the program's constants are held in
        self.constants = constants
        #: relative size of the random perturbation given to every computed value (0: none)
        self.perturb = perturb
        self.random = random.Random(seed)
        self.nodes: list[Var] = []
        self.switches: list[Switch] = []
        self.domain: list[str] = []
        self.ops: set[str] = set()
        #: the outcome of every branching operation, in order: equal lists mean the same branches
        self.branches: list[Any] = []


_active: list[_Recorder] = []


def _record() -> _Recorder:
    return _active[-1]


class Var:
    """A scalar on the tape: value, local partials (parent, ∂self/∂parent), and a value magnitude."""

    __slots__ = ("value", "parents", "mag", "index", "__weakref__")

    def __init__(self, value: Any, parents: tuple[tuple["Var", Any], ...] = (), mag: Any = None) -> None:
        self.value = value
        self.parents = parents
        self.mag = abs(value) if mag is None else mag
        self.index = -1
        if _active:
            rec = _active[-1]
            self.index = len(rec.nodes)
            rec.nodes.append(self)
            if rec.perturb and parents:
                # a rounding of this value in the method's dtype, as a float evaluation would make it
                # value·(1 + δ) as value + value·δ: 1 + δ in a Python float would round δ away
                self.value = value + value * (rec.perturb * (2 * rec.random.random() - 1))

    # -- arithmetic (an array operand defers to NumPy, which applies the operation element by element) --
    def __add__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else add(self, other)

    def __radd__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else add(other, self)

    def __sub__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else subtract(self, other)

    def __rsub__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else subtract(other, self)

    def __mul__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else multiply(self, other)

    def __rmul__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else multiply(other, self)

    def __truediv__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else divide(self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else divide(other, self)

    def __pow__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else power(self, other)

    def __rpow__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else power(other, self)

    def __neg__(self) -> Any:
        return negative(self)

    def __pos__(self) -> Any:
        return self

    def __abs__(self) -> Any:
        return absolute(self)

    # -- comparisons: plain booleans; a tie is a switch of whatever selects on it ---
    def _compare(self, other: Any, op: Callable[[Any, Any], bool]) -> bool:
        a, b = _value(self), _value(other)
        if a == b:
            _record().switches.append(Switch("comparison", _difference(self, other), "jump", len(_record().branches)))
        result = bool(op(a, b))
        _record().branches.append(result)
        return result

    def __lt__(self, other: Any) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: Any) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: Any) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: Any) -> bool:
        return self._compare(other, operator.ge)

    def __eq__(self, other: Any) -> bool:  # type: ignore[override]
        return self._compare(other, operator.eq)

    def __ne__(self, other: Any) -> bool:  # type: ignore[override]
        return self._compare(other, operator.ne)

    __hash__ = object.__hash__

    def __float__(self) -> float:
        # a Python float is a constant: the derivative through it would silently be 0
        raise TypeError("the case converts a value that depends on the inputs to a Python number (float(x), "
                        "x.astype(float), math.exp(x), ...): the derivative cannot follow it; use the xp functions")

    def __repr__(self) -> str:
        return f"Var({self.value})"


def _mp() -> Any:
    import mpmath

    return mpmath


def _value(a: Any) -> Any:
    if isinstance(a, Var):
        return a.value
    if isinstance(a, (complex, np.complexfloating)) or type(a).__name__ == "mpc":
        raise TypeError("the case computes with complex numbers; diffbench differentiates real functions of real "
                        "inputs (return a real number, e.g. the real part or the modulus)")
    if isinstance(a, (bool, np.bool_)):
        return _mp().mpf(int(a))
    if isinstance(a, (float, np.floating)) and _active and _active[-1].constants == "float32":
        # a float32 program holds its constants in float32 too: 0.1 is 0.100000001490116..., 1e-50 is 0
        # and 1e50 is inf
        with np.errstate(over="ignore", under="ignore"):
            return _mp().mpf(float(np.float32(a)))
    return _mp().mpf(a) if not isinstance(a, _mp().mpf) else a


def _mag(a: Any) -> Any:
    return a.mag if isinstance(a, Var) else abs(_value(a))


def _difference(a: Any, b: Any) -> Var | None:
    """The switching argument a − b as a node (off the output's path), or None for two constants."""
    if not isinstance(a, Var) and not isinstance(b, Var):
        return None
    return subtract(a, b)


def _node(value: Any, pairs: list[tuple[Any, Any]], mag: Any = None) -> Any:
    """A new node from (argument, partial) pairs; constants (non-Var arguments) carry no partial."""
    parents = tuple((a, d) for a, d in pairs if isinstance(a, Var))
    if not parents:
        return value
    return Var(value, parents, mag)


# --------------------------------------------------------------------------- elementary operations
def add(a: Any, b: Any) -> Any:
    return _node(_value(a) + _value(b), [(a, 1), (b, 1)], _mag(a) + _mag(b))


def subtract(a: Any, b: Any) -> Any:
    return _node(_value(a) - _value(b), [(a, 1), (b, -1)], _mag(a) + _mag(b))


def multiply(a: Any, b: Any) -> Any:
    va, vb = _value(a), _value(b)
    return _node(va * vb, [(a, vb), (b, va)], _mag(a) * _mag(b))


def divide(a: Any, b: Any) -> Any:
    mp = _mp()
    va, vb = _value(a), _value(b)
    if vb == 0:
        _record().domain.append("a division by zero")
        return _node(mp.nan, [(a, mp.nan), (b, mp.nan)])
    value = va / vb
    return _node(value, [(a, 1 / vb), (b, -value / vb)], _mag(a) / abs(vb))


def negative(a: Any) -> Any:
    return _node(-_value(a), [(a, -1)], _mag(a))


def power(a: Any, b: Any) -> Any:
    mp = _mp()
    va, vb = _value(a), _value(b)
    if va < 0 and not mp.isint(vb):
        _record().domain.append("a fractional power of a negative number")
        return _node(mp.nan, [(a, mp.nan), (b, mp.nan)])
    if va == 0 and vb < 0:
        _record().domain.append("a negative power of zero")
        return _node(mp.nan, [(a, mp.nan), (b, mp.nan)])
    value = mp.power(va, vb)
    if vb == 0:
        da = mp.mpf(0)
    elif va == 0:
        # b·a^(b−1) at a = 0: 0 for b > 1, 1 for b = 1, infinite for 0 < b < 1 (a singularity)
        da = mp.mpf(0) if vb > 1 else (mp.mpf(1) if vb == 1 else mp.inf)
    else:
        da = vb * mp.power(va, vb - 1)
    pairs = [(a, da)]
    if isinstance(b, Var):
        if va > 0:
            db = value * mp.log(va)
        elif va == 0 and vb > 0:
            db = mp.mpf(0)  # 0^b = 0 for every b > 0: flat in b
        else:
            _record().domain.append("a power of a negative number with a varying exponent")
            db = mp.nan
        pairs.append((b, db))
    return _node(value, pairs, abs(value))


def _unary(name: str, fn: Callable[[Any], Any], partial: Callable[[Any, Any], Any],
           domain: Callable[[Any], bool] | None = None, what: str = "") -> Callable[[Any], Any]:
    """An elementwise function with its derivative ``partial(a, value)``; outside ``domain`` → NaN."""

    def apply(a: Any) -> Any:
        mp = _mp()
        if _active:
            _record().ops.add(name)
        va = _value(a)
        if domain is not None and not domain(va):
            if _active:
                _record().domain.append(what)
            return _node(mp.nan, [(a, mp.nan)])
        value = fn(va)
        if not isinstance(a, Var):
            return value
        return _node(value, [(a, partial(va, value))], abs(value))

    apply.__name__ = name
    return apply


def absolute(a: Any) -> Any:
    mp = _mp()
    va = _value(a)
    if isinstance(a, Var):
        if va == 0:
            _record().switches.append(Switch("abs", a, "kink", len(_record().branches)))
        _record().branches.append(va >= 0)
    return _node(abs(va), [(a, mp.sign(va))], _mag(a))


def sign(a: Any) -> Any:
    mp = _mp()
    va = _value(a)
    if isinstance(a, Var):
        if va == 0:
            _record().switches.append(Switch("sign", a, "jump", len(_record().branches)))
        _record().branches.append(int(va > 0) - int(va < 0))
    return mp.mpf(int(va > 0) - int(va < 0))


def _step(name: str, fn: Callable[[Any], Any], at: Callable[[Any], bool]) -> Callable[[Any], Any]:
    """A piecewise-constant function (floor, ceil, round): slope 0, a jump where ``at`` holds."""

    def apply(a: Any) -> Any:
        va = _value(a)
        value = fn(va)
        if isinstance(a, Var):
            if at(va):
                _record().switches.append(Switch(name, a, "jump", len(_record().branches)))
            _record().branches.append(value)
        return value

    apply.__name__ = name
    return apply


def maximum(a: Any, b: Any) -> Any:
    va, vb = _value(a), _value(b)
    if isinstance(a, Var) or isinstance(b, Var):
        _record().branches.append(va >= vb)
    if va == vb:
        d = _difference(a, b)
        if d is not None:
            _record().switches.append(Switch("maximum", d, "kink", len(_record().branches) - 1))
    picked, value = (a, va) if va >= vb else (b, vb)
    if not isinstance(picked, Var):
        # a constant picked over a traced value stays on the tape (without partials), so that what
        # follows records its branches the same way on either side of the switch
        return Var(value, (), abs(value)) if isinstance(a, Var) or isinstance(b, Var) else value
    return _node(value, [(picked, 1)], _mag(picked))


def minimum(a: Any, b: Any) -> Any:
    va, vb = _value(a), _value(b)
    if isinstance(a, Var) or isinstance(b, Var):
        _record().branches.append(va <= vb)
    if va == vb:
        d = _difference(a, b)
        if d is not None:
            _record().switches.append(Switch("minimum", d, "kink", len(_record().branches) - 1))
    picked, value = (a, va) if va <= vb else (b, vb)
    if not isinstance(picked, Var):
        # a constant picked over a traced value stays on the tape (without partials), so that what
        # follows records its branches the same way on either side of the switch
        return Var(value, (), abs(value)) if isinstance(a, Var) or isinstance(b, Var) else value
    return _node(value, [(picked, 1)], _mag(picked))


def atan2(a: Any, b: Any) -> Any:
    mp = _mp()
    if _active:
        _record().ops.add("atan2")
    va, vb = _value(a), _value(b)
    r2 = va * va + vb * vb
    if r2 == 0:
        _record().domain.append("atan2 at the origin")
        return _node(mp.nan, [(a, mp.nan), (b, mp.nan)])
    if va == 0 and vb < 0 and isinstance(a, Var):
        _record().switches.append(Switch("atan2", a, "jump", len(_record().branches)))  # the branch cut: ±π
    if isinstance(a, Var) or isinstance(b, Var):
        _record().branches.append((va >= 0, vb >= 0))
    return _node(mp.atan2(va, vb), [(a, vb / r2), (b, -va / r2)])


def logaddexp(a: Any, b: Any) -> Any:
    mp = _mp()
    va, vb = _value(a), _value(b)
    big = max(va, vb)
    value = big + mp.log(mp.exp(va - big) + mp.exp(vb - big))
    return _node(value, [(a, mp.exp(va - value)), (b, mp.exp(vb - value))], abs(value))


def _sum(values: list[Any]) -> Any:
    mp = _mp()
    if not values:
        return mp.mpf(0)
    total = mp.fsum(_value(v) for v in values)
    return _node(total, [(v, 1) for v in values], mp.fsum(_mag(v) for v in values))


def _prod(values: list[Any]) -> Any:
    mp = _mp()
    if _active:
        _record().ops.add("prod")
    vals = [_value(v) for v in values]
    n = len(vals)
    # ∂/∂a_i = product of the others, from prefix and suffix products (right at zeros too)
    prefix, suffix = [mp.mpf(1)] * (n + 1), [mp.mpf(1)] * (n + 1)
    for i in range(n):
        prefix[i + 1] = prefix[i] * vals[i]
        suffix[n - 1 - i] = suffix[n - i] * vals[n - 1 - i]
    mag = mp.fprod(_mag(v) for v in values) if values else mp.mpf(1)
    return _node(prefix[n], [(v, prefix[i] * suffix[i + 1]) for i, v in enumerate(values)], mag)


def dot(a: list[Any], b: list[Any]) -> Any:
    """Σ aₖ·bₖ as one node (a matrix product's element): no chain of additions on the tape."""
    mp = _mp()
    va, vb = [_value(v) for v in a], [_value(v) for v in b]
    pairs = [(x, y) for x, y in zip(a, vb)] + [(y, x) for y, x in zip(b, va)]
    mag = mp.fsum(_mag(x) * _mag(y) for x, y in zip(a, b))
    return _node(mp.fdot(va, vb), pairs, mag)


def matmul(a: Any, b: Any) -> Any:
    """The matrix product of object arrays (NumPy's rules for 1-D and 2-D operands) with :func:`dot` nodes."""
    from .namespaces import _obj

    left, right = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if left.ndim == 0 or right.ndim == 0 or left.ndim > 2 or right.ndim > 2:
        return _obj(np.matmul(left, right))
    l2 = left.reshape(1, -1) if left.ndim == 1 else left
    r2 = right.reshape(-1, 1) if right.ndim == 1 else right
    if l2.shape[1] != r2.shape[0]:
        raise ValueError(f"matmul: shapes {left.shape} and {right.shape} are not aligned")
    out = np.empty((l2.shape[0], r2.shape[1]), dtype=object)
    columns = [list(r2[:, j]) for j in range(r2.shape[1])]
    for i in range(l2.shape[0]):
        row = list(l2[i])
        for j, column in enumerate(columns):
            out[i, j] = dot(row, column)
    if left.ndim == 1:
        out = out[0]
    if right.ndim == 1:
        out = out[..., 0]
    return _obj(out)


#: ``@`` of object arrays holding tape values (namespaces' ``_matmul`` looks for this on the values' type)
Var.tape_matmul = staticmethod(matmul)  # type: ignore[attr-defined]


def _reduce_pairwise(pair: Callable[[Any, Any], Any]) -> Callable[[list[Any]], Any]:
    return lambda values: functools.reduce(pair, values)


def _select(cond: Any, a: Any, b: Any) -> Any:
    return a if bool(cond) else b


def namespace() -> Any:
    """The namespace whose scalars are :class:`Var` nodes (the case's operations on the tape)."""
    return _namespace()


@functools.lru_cache(maxsize=1)
def _namespace() -> Any:
    import mpmath as mp

    from .namespaces import _ObjectNamespace

    def is_int(v: Any) -> bool:
        return bool(mp.isint(v))

    unary = {
        "exp": _unary("exp", mp.exp, lambda a, v: v),
        "expm1": _unary("expm1", mp.expm1, lambda a, v: mp.exp(a)),
        "log": _unary("log", mp.log, lambda a, v: 1 / a, lambda a: a > 0, "a logarithm of a non-positive number"),
        "log1p": _unary("log1p", mp.log1p, lambda a, v: 1 / (1 + a), lambda a: a > -1,
                        "log1p of a number ≤ −1"),
        "log2": _unary("log2", lambda a: mp.log(a, 2), lambda a, v: 1 / (a * mp.log(2)), lambda a: a > 0,
                       "a logarithm of a non-positive number"),
        "log10": _unary("log10", mp.log10, lambda a, v: 1 / (a * mp.log(10)), lambda a: a > 0,
                        "a logarithm of a non-positive number"),
        "sqrt": _unary("sqrt", mp.sqrt, lambda a, v: 1 / (2 * v) if v != 0 else mp.inf, lambda a: a >= 0,
                       "a square root of a negative number"),
        "square": lambda a: multiply(a, a),
        "abs": absolute,
        "sign": sign,
        "sin": _unary("sin", mp.sin, lambda a, v: mp.cos(a)),
        "cos": _unary("cos", mp.cos, lambda a, v: -mp.sin(a)),
        "tan": _unary("tan", mp.tan, lambda a, v: mp.sec(a) ** 2),
        "asin": _unary("asin", mp.asin, lambda a, v: 1 / mp.sqrt((1 - a) * (1 + a)) if abs(a) != 1 else mp.inf,
                       lambda a: abs(a) <= 1, "asin outside [−1, 1]"),
        "acos": _unary("acos", mp.acos, lambda a, v: -1 / mp.sqrt((1 - a) * (1 + a)) if abs(a) != 1 else -mp.inf,
                       lambda a: abs(a) <= 1, "acos outside [−1, 1]"),
        "atan": _unary("atan", mp.atan, lambda a, v: 1 / (1 + a * a)),
        "sinh": _unary("sinh", mp.sinh, lambda a, v: mp.cosh(a)),
        "cosh": _unary("cosh", mp.cosh, lambda a, v: mp.sinh(a)),
        "tanh": _unary("tanh", mp.tanh, lambda a, v: mp.sech(a) ** 2),
        "asinh": _unary("asinh", mp.asinh, lambda a, v: 1 / mp.sqrt(a * a + 1)),
        "acosh": _unary("acosh", mp.acosh, lambda a, v: 1 / mp.sqrt((a - 1) * (a + 1)) if a != 1 else mp.inf,
                        lambda a: a >= 1, "acosh below 1"),
        "atanh": _unary("atanh", mp.atanh, lambda a, v: 1 / ((1 - a) * (1 + a)) if abs(a) != 1 else mp.inf,
                        lambda a: abs(a) <= 1, "atanh outside [−1, 1]"),
        "floor": _step("floor", mp.floor, is_int),
        "ceil": _step("ceil", mp.ceil, is_int),
        "round": _step("round", lambda a: mp.floor(a + mp.mpf(0.5)), lambda a: is_int(a + mp.mpf(0.5))),
        "negative": negative,
        "erf": _unary("erf", mp.erf, lambda a, v: 2 / mp.sqrt(mp.pi) * mp.exp(-a * a)),
        "erfc": _unary("erfc", mp.erfc, lambda a, v: -2 / mp.sqrt(mp.pi) * mp.exp(-a * a)),
        # σ'(a) = σ(a)·σ(−a): no 1 − σ to cancel
        "sigmoid": _unary("sigmoid", lambda a: 1 / (1 + mp.exp(-a)), lambda a, v: v / (1 + mp.exp(a))),
    }
    binary = {"maximum": maximum, "minimum": minimum, "pow": power, "atan2": atan2, "logaddexp": logaddexp,
              "add": add, "subtract": subtract, "multiply": multiply, "divide": divide}
    ns = _ObjectNamespace("mpmath (reverse accumulation)", unary, binary, _sum, _prod,
                          _reduce_pairwise(maximum), _reduce_pairwise(minimum), _select,
                          {"pi": mp.pi, "e": mp.e, "inf": mp.inf})
    ns.matmul = matmul  # type: ignore[method-assign]
    ns.vecdot = lambda a, b, axis=-1: (matmul(a, b) if np.ndim(a) == 1 and np.ndim(b) == 1 and axis in (-1, 0)
                                       else _ObjectNamespace.vecdot(ns, a, b, axis))  # type: ignore[method-assign]
    # an index is piecewise constant in the inputs; a tie between the largest elements is a jump
    ns.argmax = lambda x, axis=None: np.argmax(np.asarray(x, dtype=object), axis=axis)  # type: ignore[method-assign]
    ns.argmin = lambda x, axis=None: np.argmin(np.asarray(x, dtype=object), axis=axis)  # type: ignore[method-assign]
    return ns


# --------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """One evaluation of a case on the tape at one precision."""

    value: Any
    gradient: list[Any]
    scale: list[Any]
    magnitude: Any
    switches: list[Switch]
    domain: list[str]
    ops: set[str]
    branches: list[Any] = field(default_factory=list)
    inputs: list[Var] = field(default_factory=list)
    nodes: list[Var] = field(default_factory=list)

    def dependence(self, node: Var) -> list[int]:
        """Indices of the inputs that ``node`` depends on (a nonzero path of partials to it)."""
        reach = {node.index: True}
        for v in reversed(self.nodes[:node.index + 1]):
            if v.index not in reach:
                continue
            for parent, _ in v.parents:
                reach[parent.index] = True
        return [i for i, x in enumerate(self.inputs) if x.index in reach]


def evaluate(func: Callable[..., Any], shapes: list[tuple[int, ...]], flat: list[Any], prec: int,
             check: Callable[[Any], None] | None = None, perturb: float = 0.0, seed: int = 0,
             constants: str = "float64") -> Evaluation:
    """Run ``func(*arrays, xp=namespace())`` on tape nodes at ``prec`` bits and sweep back once.

    ``flat`` holds the point's coordinates (exact ``mpf``); ``shapes`` the inputs' shapes.
    ``check`` is called with the function's raw output (to reject non-scalars).
    ``perturb`` > 0 multiplies every computed value by 1 + perturb·u, u uniform in
    [−1, 1] (seeded): one sample of what rounding in a dtype with that unit roundoff
    does to the gradient. ``constants="float32"`` rounds the case's float constants to
    float32 (within float32's normal range), as a float32 program holds them.
    Raises the case's own exceptions, and TypeError when it computes with complex numbers.
    """
    import mpmath

    from .namespaces import ObjectArray

    rec = _Recorder(perturb, seed, constants)
    _active.append(rec)
    try:
        with mpmath.workprec(prec):
            inputs = [Var(mpmath.mpf(v)) for v in flat]
            vector = np.empty(len(inputs), dtype=object)
            vector[:] = inputs
            args = [piece.copy().view(ObjectArray) for piece in split(vector, shapes)]
            out = func(*args, xp=namespace())
            if check is not None:
                check(out)
            out = np.asarray(out, dtype=object).reshape(-1)[0]
            value = _value(out)
            adjoint: dict[int, Any] = {}
            absolute: dict[int, Any] = {}
            if isinstance(out, Var):
                adjoint[out.index] = mpmath.mpf(1)
                absolute[out.index] = mpmath.mpf(1)
                for node in reversed(rec.nodes[:out.index + 1]):
                    g = adjoint.get(node.index)
                    if g is None:
                        continue
                    c = absolute[node.index]
                    for parent, partial in node.parents:
                        adjoint[parent.index] = adjoint.get(parent.index, 0) + partial * g
                        absolute[parent.index] = absolute.get(parent.index, 0) + abs(partial) * c
            zero = mpmath.mpf(0)
            gradient = [adjoint.get(v.index, zero) for v in inputs]
            scale = [absolute.get(v.index, zero) for v in inputs]
            magnitude = _mag(out)
    finally:
        _active.pop()
    return Evaluation(value, gradient, scale, magnitude, rec.switches, rec.domain, rec.ops, rec.branches, inputs,
                      rec.nodes)
