"""Reverse accumulation in ball arithmetic along the case's own operations.

The case is evaluated once in a namespace whose scalars are :class:`Var` nodes: each
holds its value as an ``arb`` ball (python-flint: a midpoint and a *proven* radius at
the working precision ``flint.ctx.prec``) and the exact local partial derivatives with
respect to its arguments, also balls. One backward sweep then gives

- the gradient ``Σ_paths Π ∂`` as balls: every true component lies inside its ball, so
  the ball's radius is a proof of how far the midpoint can be from the truth (every
  local partial is evaluated by its own accurate formula, e.g. ``sech²(a)`` for tanh,
  never ``1 − tanh²``), and
- its *scale* ``Σ_paths Π |∂|``: the size of the quantities that cancel in each
  component. Any method that follows the case's formula in floating point rounds
  at this scale, so verdicts compare each component's error with it.

A matrix product, solve, determinant or inverse is one node of the tape evaluated with
``arb_mat`` (one matrix operation, never element by element), whose backward step is the
matrix adjoint: ``Ā += C̄Bᵀ, B̄ += AᵀC̄`` for ``C = AB``; ``B̄ += A⁻ᵀX̄, Ā −= B̄Xᵀ`` for
``X = A⁻¹B``; ``Ā += det(A)·A⁻ᵀ·ḡ`` for the determinant; ``Ā −= A⁻ᵀX̄A⁻ᵀ`` for ``X = A⁻¹``.

**Switches.** Every non-smooth operation (``abs``/``sign``, ``maximum``/``minimum``,
comparisons, ``floor``/``ceil``/``round``, ``atan2``'s cut) decides the sign of its
switching argument (``a − b`` for max/min and comparisons, the distance to the integer
for floor): the sign is proven when the argument's ball excludes 0, and the argument is
exactly 0 when its ball is the exact 0. A ball that contains 0 but is not exact is
decided exactly where the argument is a rational function of the inputs and constants: those
are float64 (or float32) numbers, that is dyadic rationals, so such an argument is k·2^E/d for
integers k and 0 < d ≤ 2^B (E, its *grain*, and B, its denominator bits, follow from the
operands: the smaller grain and the sum of the bits for a sum, the sums of both for a product,
and for a quotient a/b the difference of the grains and a's bits plus those of b's numerator
|b|·d_b·2^−E_b), so its smallest nonzero size is 2^(E−B) and a ball around 0 narrower than that
proves it is 0. Anything else stays *unresolved* at this precision (``Evaluation.unresolved``): the
reference raises the precision until the ball excludes 0 or proves it; where the budget
runs out first, the midpoint decides (a tie only where the midpoint is exactly 0). A tie
is recorded as a :class:`Switch`: these are the only places where a kink or a jump can
be, so smooth points are never called kinks.

**Fallback.** An operation that python-flint lacks (none of the namespace's today; the
table ``ARB_FUNCTIONS`` says which have ball versions) is evaluated in mpmath at the
working precision. Its value carries no proven radius, so the evaluation names it
(``Evaluation.fallback``) and the reference certifies such a gradient by the agreement
of two working precisions instead.

The cost is a small multiple of the function's own cost at the working precision,
independent of the number of inputs.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from flint import arb, arb_mat, ctx

from .engines import split

__all__ = ["Var", "Switch", "Evaluation", "evaluate", "to_mpf", "ARB_FUNCTIONS"]

#: the grain of an exact zero: no constraint (a multiple of every power of two)
_NO_GRAIN = 1 << 40


@dataclass
class Switch:
    """A non-smooth operation whose switching argument is exactly 0 at the point."""

    op: str
    argument: "Var | None"
    #: ``jump``: the value itself is discontinuous there (sign, floor, a branch cut); ``kink``: only its slope
    kind: str
    #: the index of this operation's outcome in the evaluation's ``branches``
    position: int = -1
    #: whether the argument was proven 0 (False: its ball still held 0 at this precision)
    proven: bool = True


@dataclass
class DomainRecord:
    """Why a value is not real or not finite (the message) and the operands involved."""

    message: str
    #: for a power of a negative base with a varying exponent: the base and exponent nodes, and the base's value
    base: Any = None
    exponent: Any = None
    value: float = float("nan")


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
        self.domain_records: list[DomainRecord] = []
        self.ops: set[str] = set()
        #: the outcome of every branching operation, in order: equal lists mean the same branches
        self.branches: list[Any] = []
        #: switch arguments whose ball held 0 without proving it 0 (decided by the midpoint)
        self.unresolved = 0
        #: operations evaluated in mpmath (no proven radius)
        self.fallback: set[str] = set()

    def fail(self, message: str, **details: Any) -> None:
        self.domain.append(message)
        self.domain_records.append(DomainRecord(message, **details))


_active: list[_Recorder] = []


class _State:
    """The innermost evaluation's node list and perturbation, read by every new node without a look-up chain."""

    nodes: list[Any] | None = None
    perturb: float = 0.0
    #: whether the program's float constants are float64 (read as they are)
    float64: bool = True


_state = _State()


def _activate() -> None:
    rec = _active[-1] if _active else None
    _state.nodes = rec.nodes if rec is not None else None
    _state.perturb = rec.perturb if rec is not None else 0.0
    _state.float64 = rec is None or rec.constants != "float32"


def _record() -> _Recorder:
    return _active[-1]


class _Block:
    """One matrix operation on the tape: its inputs (object arrays), outputs and adjoint step."""

    __slots__ = ("inputs", "outputs", "backward", "done")

    def __init__(self, inputs: list[Any], backward: Callable[[list[Any], list[Any]], None]) -> None:
        self.inputs = inputs
        self.outputs: list[Var] = []
        #: ``backward(adjoints, scales)`` adds to the inputs' adjoints and scales (dicts by node index)
        self.backward = backward
        self.done = False


class Var:
    """A scalar on the tape: value (a ball), local partials (parent, ∂self/∂parent), magnitude and grain."""

    __slots__ = ("value", "parents", "mag", "index", "grain", "block", "denom")

    def __init__(self, value: Any, parents: tuple[tuple["Var", Any], ...] = (), mag: Any = None,
                 grain: int | None = None, block: _Block | None = None, denom: int = 0) -> None:
        self.value = value
        self.parents = parents
        self.mag = abs(value) if mag is None else mag
        self.grain = grain
        #: bits of a bound on the denominator: the value is k·2^grain/d for integers k and 0 < d ≤ 2^denom
        self.denom = denom
        self.block = block
        nodes = _state.nodes
        if nodes is not None:
            self.index = len(nodes)
            nodes.append(self)
            if _state.perturb and (parents or block is not None):
                # a rounding of this value in the method's dtype, as a float evaluation would make it
                rec = _active[-1]
                self.value = value + value * arb(rec.perturb * (2 * rec.random.random() - 1))
                self.grain = None
        else:
            self.index = -1

    # -- arithmetic (an array operand defers to NumPy, which applies the operation element by element) --
    def __add__(self, other: Any) -> Any:
        if type(other) is Var:
            return Var(self.value + other.value, ((self, 1), (other, 1)), self.mag + other.mag,
                       _min_grain(self.grain, other.grain), denom=self.denom + other.denom)
        return NotImplemented if isinstance(other, np.ndarray) else add(self, other)

    def __radd__(self, other: Any) -> Any:
        return NotImplemented if isinstance(other, np.ndarray) else add(other, self)

    def __sub__(self, other: Any) -> Any:
        if type(other) is Var:
            return Var(self.value - other.value, ((self, 1), (other, -1)), self.mag + other.mag,
                       _min_grain(self.grain, other.grain), denom=self.denom + other.denom)
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
        if type(other) is int and other == 2:
            va, g = self.value, self.grain
            value = va * va
            return Var(value, ((self, 2 * va),), abs(value), None if g is None else min(2 * g, _NO_GRAIN),
                       denom=2 * self.denom)
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
        s, proven = _decide(_value(self) - _value(other), _difference_bound(self, other))
        if s == 0:
            _record().switches.append(Switch("comparison", _difference(self, other), "jump", len(_record().branches),
                                             proven))
        result = bool(op(s, 0))
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


def to_mpf(ball: Any) -> Any:
    """The midpoint of an ``arb`` ball as an exact ``mpmath.mpf`` (no rounding); NaN/±inf where not finite."""
    mp = _mp()
    if isinstance(ball, mp.mpf):
        return ball
    if not isinstance(ball, arb):
        return mp.mpf(ball)
    mid = ball.mid()
    if not mid.is_finite():
        value = float(mid)
        return mp.nan if math.isnan(value) else (mp.inf if value > 0 else -mp.inf)
    if not ball.is_finite():
        return mp.nan
    man, exp = mid.man_exp()
    return mp.mp.make_mpf(mp.libmp.from_man_exp(int(man), int(exp)))


def _value(a: Any) -> Any:
    kind = type(a)
    if kind is Var:
        return a.value
    if kind is arb:
        return a
    if kind is float and not (_active and _active[-1].constants == "float32"):
        return arb(a)
    if kind is int:
        return arb(a)
    if isinstance(a, (complex, np.complexfloating)) or type(a).__name__ in ("mpc", "acb"):
        raise TypeError("the case computes with complex numbers; diffbench differentiates real functions of real "
                        "inputs (return a real number, e.g. the real part or the modulus)")
    if isinstance(a, (bool, np.bool_)):
        return arb(int(a))
    if isinstance(a, (int, np.integer)):
        return arb(int(a))
    if isinstance(a, (float, np.floating)) and _active and _active[-1].constants == "float32":
        # a float32 program holds its constants in float32 too: 0.1 is 0.100000001490116..., 1e-50 is 0
        # and 1e50 is inf
        with np.errstate(over="ignore", under="ignore"):
            return arb(float(np.float32(a)))
    if isinstance(a, (float, np.floating)):
        return arb(float(a))
    return arb(a)


def _grain(a: Any) -> int | None:
    """E such that ``a`` is an integer multiple of 2^E (a lower bound), or None where it is no dyadic rational
    (a quotient, whose denominator bound :func:`_rational` carries, is none here)."""
    if type(a) is Var:
        return a.grain if not a.denom else None
    if isinstance(a, (bool, np.bool_, int, np.integer)):
        return 0 if a else _NO_GRAIN
    if isinstance(a, (float, np.floating)):
        f = float(a)
        if _active and _active[-1].constants == "float32":
            with np.errstate(over="ignore", under="ignore"):
                f = float(np.float32(f))
        if f == 0.0:
            return _NO_GRAIN
        if not math.isfinite(f):
            return None
        return math.frexp(f)[1] - 53
    if isinstance(a, arb):
        return _ball_grain(a)
    return None


def _ball_grain(ball: Any) -> int | None:
    if not ball.is_exact() or not ball.is_finite():
        return None
    if ball.is_zero():
        return _NO_GRAIN
    return int(ball.mid().man_exp()[1])


def _sum_grain(*grains: int | None) -> int | None:
    if any(g is None for g in grains):
        return None
    return min(grains)  # type: ignore[type-var]


def _sub_grain(a: Any, b: Any) -> int | None:
    return _sum_grain(_grain(a), _grain(b))


def _mul_grain(a: Any, b: Any) -> int | None:
    ga, gb = _grain(a), _grain(b)
    if ga is None or gb is None:
        return None
    return min(ga + gb, _NO_GRAIN)


def _rational(a: Any) -> tuple[int, int] | None:
    """(E, B) such that ``a`` is k·2^E/d for integers k and 0 < d ≤ 2^B, or None where it is no rational of the
    inputs and constants that the tape can bound (a transcendental function, a perturbed value)."""
    if type(a) is Var:
        return None if a.grain is None else (a.grain, a.denom)
    grain = _grain(a)
    return None if grain is None else (grain, 0)


def _bound(e: int | None, b: int) -> int | None:
    """The exponent of the smallest nonzero magnitude a value k·2^e/d with 0 < d ≤ 2^b can have: 2^(e − b)."""
    if e is None:
        return None
    return e if e >= _NO_GRAIN else e - b


def _difference_bound(a: Any, b: Any) -> int | None:
    """:func:`_bound` of a − b: a sum of k·2^Ea/da and k'·2^Eb/db is a multiple of 2^min(Ea, Eb)/(da·db)."""
    ra, rb = _rational(a), _rational(b)
    if ra is None or rb is None:
        return None
    return _bound(min(ra[0], rb[0]), ra[1] + rb[1])


def _decide(ball: Any, grain: int | None) -> tuple[int, bool]:
    """The sign of a switching argument from its ball: (sign, proven). See the module docstring for the rule."""
    if ball > 0:
        return 1, True
    if ball < 0:
        return -1, True
    if ball.is_zero():
        return 0, True
    if not ball.is_finite():
        return 0, True
    if grain is not None and grain < _NO_GRAIN and ball.rad() * 2 < arb(2) ** grain:
        return 0, True  # a multiple of 2^grain within less than 2^(grain−1) of 0
    if _active:
        _record().unresolved += 1
    mid = ball.mid()
    return (1 if mid > 0 else -1 if mid < 0 else 0), False


def _mag(a: Any) -> Any:
    return a.mag if type(a) is Var else abs(_value(a))


def _difference(a: Any, b: Any) -> Var | None:
    """The switching argument a − b as a node (off the output's path), or None for two constants."""
    if not isinstance(a, Var) and not isinstance(b, Var):
        return None
    return subtract(a, b)


def _node(value: Any, pairs: list[tuple[Any, Any]], mag: Any = None, grain: int | None = None) -> Any:
    """A new node from (argument, partial) pairs; constants (non-Var arguments) carry no partial."""
    parents = tuple((a, d) for a, d in pairs if type(a) is Var)
    if not parents:
        return value
    return Var(value, parents, mag, grain)


def _nan() -> Any:
    return arb.nan()


def _inf() -> Any:
    return arb.pos_inf()


# --------------------------------------------------------------------------- elementary operations
def _min_grain(ga: int | None, gb: int | None) -> int | None:
    return None if ga is None or gb is None else (ga if ga < gb else gb)


def _plain(a: Any) -> bool:
    """A Python number the tape reads as it is (a float32 program rounds its float constants first)."""
    kind = type(a)
    return kind is int or (kind is float and _state.float64)


def add(a: Any, b: Any) -> Any:
    if type(a) is Var and type(b) is Var:  # the common case, without the general path's look-ups
        return Var(a.value + b.value, ((a, 1), (b, 1)), a.mag + b.mag, _min_grain(a.grain, b.grain),
                   denom=a.denom + b.denom)
    if type(b) is Var and _plain(a):
        va = arb(a)
        return Var(va + b.value, ((b, 1),), abs(va) + b.mag, _min_grain(_grain(a), b.grain), denom=b.denom)
    if type(a) is Var and _plain(b):
        vb = arb(b)
        return Var(a.value + vb, ((a, 1),), a.mag + abs(vb), _min_grain(a.grain, _grain(b)), denom=a.denom)
    return _node(_value(a) + _value(b), [(a, 1), (b, 1)], _mag(a) + _mag(b), _sub_grain(a, b))


def subtract(a: Any, b: Any) -> Any:
    if type(a) is Var and type(b) is Var:
        return Var(a.value - b.value, ((a, 1), (b, -1)), a.mag + b.mag, _min_grain(a.grain, b.grain),
                   denom=a.denom + b.denom)
    if type(b) is Var and _plain(a):
        va = arb(a)
        return Var(va - b.value, ((b, -1),), abs(va) + b.mag, _min_grain(_grain(a), b.grain), denom=b.denom)
    return _node(_value(a) - _value(b), [(a, 1), (b, -1)], _mag(a) + _mag(b), _sub_grain(a, b))


def multiply(a: Any, b: Any) -> Any:
    if type(a) is Var and type(b) is Var:
        va, vb, ga, gb = a.value, b.value, a.grain, b.grain
        grain = None if ga is None or gb is None else min(ga + gb, _NO_GRAIN)
        return Var(va * vb, ((a, vb), (b, va)), a.mag * b.mag, grain, denom=a.denom + b.denom)
    if type(b) is Var and _plain(a):
        va, gb = arb(a), b.grain
        ga = _grain(a)
        grain = None if ga is None or gb is None else min(ga + gb, _NO_GRAIN)
        return Var(va * b.value, ((b, va),), abs(va) * b.mag, grain, denom=b.denom)
    va, vb = _value(a), _value(b)
    return _node(va * vb, [(a, vb), (b, va)], _mag(a) * _mag(b), _mul_grain(a, b))


def divide(a: Any, b: Any) -> Any:
    va, vb = _value(a), _value(b)
    rb = _rational(b)
    s, _ = _decide(vb, None if rb is None else _bound(*rb))
    if s == 0:
        _record().fail("a division by zero")
        return _node(_nan(), [(a, _nan()), (b, _nan())])
    value = va / vb
    out = _node(value, [(a, 1 / vb), (b, -value / vb)], _mag(a) / abs(vb))
    ra = _rational(a)
    if type(out) is Var and ra is not None and rb is not None and ra[0] < _NO_GRAIN and vb.is_finite() \
            and not vb.contains(0):
        # a = ka·2^Ea/da, b = kb·2^Eb/db: a/b = ka·db·2^(Ea−Eb)/(da·kb), and 1 ≤ |kb| = |b|·db·2^−Eb
        log2_upper = ((abs(vb).mid() + vb.rad()).log() / arb(2).log()).upper()
        if log2_upper.is_finite():
            kb_bits = rb[1] - rb[0] + int(math.ceil(float(log2_upper))) + 1
            out.grain, out.denom = ra[0] - rb[0], ra[1] + max(kb_bits, 0)
    return out


def negative(a: Any) -> Any:
    out = _node(-_value(a), [(a, -1)], _mag(a), _grain(a))
    if type(out) is Var and type(a) is Var:
        out.grain, out.denom = a.grain, a.denom
    return out


def power(a: Any, b: Any) -> Any:
    if type(a) is Var and type(b) is int and b >= 2:
        # a fixed integer power (x**2, x**3): no domain to check, no switch
        va, g = a.value, a.grain
        below = va ** (b - 1)
        value = below * va
        return Var(value, ((a, b * below),), abs(value), None if g is None else min(b * g, _NO_GRAIN),
                   denom=b * a.denom)
    va, vb = _value(a), _value(b)
    sa, _ = _decide(va, _grain(a))
    integer = vb.is_integer()
    sb, _ = _decide(vb, _grain(b))
    if sa < 0 and not integer:
        _record().fail("a fractional power of a negative number")
        return _node(_nan(), [(a, _nan()), (b, _nan())])
    if sa == 0 and sb < 0:
        _record().fail("a negative power of zero")
        return _node(_nan(), [(a, _nan()), (b, _nan())])
    grain = None
    if integer:
        n = int(vb.unique_fmpz())
        value = va ** n
        if n >= 0 and _grain(a) is not None:
            grain = min(n * _grain(a), _NO_GRAIN) if n else 0  # type: ignore[operator]
    elif sa == 0:
        value = arb(0)
    else:
        value = va ** vb
    if sb == 0:
        da = arb(0)
    elif sa == 0:
        # b·a^(b−1) at a = 0: 0 for b > 1, 1 for b = 1, infinite for 0 < b < 1 (a singularity)
        s1, _ = _decide(vb - 1, _sum_grain(_grain(b), 0))
        da = arb(0) if s1 > 0 else (arb(1) if s1 == 0 else _inf())
    elif integer:
        da = vb * va ** (int(vb.unique_fmpz()) - 1)
    else:
        da = vb * va ** (vb - 1)
    pairs = [(a, da)]
    if isinstance(b, Var):
        if sa > 0:
            db = value * va.log()
        elif sa == 0 and sb > 0:
            db = arb(0)  # 0^b = 0 for every b > 0: flat in b
        else:
            _record().fail("a power of a negative number with a varying exponent", base=a, exponent=b,
                           value=float(va))
            db = _nan()
        pairs.append((b, db))
    return _node(value, pairs, abs(value), grain)


#: name -> (ball function, ball partial ``(a, value) -> ∂``): the operations evaluated with proven radii
ARB_FUNCTIONS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]] = {
    "exp": (lambda a: a.exp(), lambda a, v: v),
    "expm1": (lambda a: a.expm1(), lambda a, v: a.exp()),
    "log": (lambda a: a.log(), lambda a, v: 1 / a),
    "log1p": (lambda a: a.log1p(), lambda a, v: 1 / (1 + a)),
    "log2": (lambda a: a.log() / arb.const_log2(), lambda a, v: 1 / (a * arb.const_log2())),
    "log10": (lambda a: a.log() / arb.const_log10(), lambda a, v: 1 / (a * arb.const_log10())),
    "sqrt": (lambda a: a.sqrt(), lambda a, v: 1 / (2 * v) if not v.is_zero() else _inf()),
    "sin": (lambda a: a.sin(), lambda a, v: a.cos()),
    "cos": (lambda a: a.cos(), lambda a, v: -a.sin()),
    "tan": (lambda a: a.tan(), lambda a, v: a.sec() ** 2),
    "asin": (lambda a: a.asin(), lambda a, v: 1 / ((1 - a) * (1 + a)).sqrt() if not _at_unit(a) else _inf()),
    "acos": (lambda a: a.acos(), lambda a, v: -1 / ((1 - a) * (1 + a)).sqrt() if not _at_unit(a) else -_inf()),
    "atan": (lambda a: a.atan(), lambda a, v: 1 / (1 + a * a)),
    "sinh": (lambda a: a.sinh(), lambda a, v: a.cosh()),
    "cosh": (lambda a: a.cosh(), lambda a, v: a.sinh()),
    "tanh": (lambda a: a.tanh(), lambda a, v: a.sech() ** 2),
    "asinh": (lambda a: a.asinh(), lambda a, v: 1 / (a * a + 1).sqrt()),
    "acosh": (lambda a: a.acosh(), lambda a, v: 1 / ((a - 1) * (a + 1)).sqrt() if not (a - 1).is_zero() else _inf()),
    "atanh": (lambda a: a.atanh(), lambda a, v: 1 / ((1 - a) * (1 + a)) if not _at_unit(a) else _inf()),
    "erf": (lambda a: a.erf(), lambda a, v: 2 / arb.const_sqrt_pi() * (-a * a).exp()),
    "erfc": (lambda a: a.erfc(), lambda a, v: -2 / arb.const_sqrt_pi() * (-a * a).exp()),
    # σ'(a) = σ(a)·σ(−a): no 1 − σ to cancel
    "sigmoid": (lambda a: 1 / (1 + (-a).exp()), lambda a, v: v / (1 + a.exp())),
}


def _at_unit(a: Any) -> bool:
    return bool((abs(a) - 1).is_zero())


def _mpmath_functions() -> dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]]:
    """The same operations in mpmath: the fallback where :data:`ARB_FUNCTIONS` lacks one."""
    mp = _mp()
    return {
        "exp": (mp.exp, lambda a, v: v), "expm1": (mp.expm1, lambda a, v: mp.exp(a)),
        "log": (mp.log, lambda a, v: 1 / a), "log1p": (mp.log1p, lambda a, v: 1 / (1 + a)),
        "log2": (lambda a: mp.log(a, 2), lambda a, v: 1 / (a * mp.log(2))),
        "log10": (mp.log10, lambda a, v: 1 / (a * mp.log(10))),
        "sqrt": (mp.sqrt, lambda a, v: 1 / (2 * v) if v != 0 else mp.inf),
        "sin": (mp.sin, lambda a, v: mp.cos(a)), "cos": (mp.cos, lambda a, v: -mp.sin(a)),
        "tan": (mp.tan, lambda a, v: mp.sec(a) ** 2),
        "asin": (mp.asin, lambda a, v: 1 / mp.sqrt((1 - a) * (1 + a)) if abs(a) != 1 else mp.inf),
        "acos": (mp.acos, lambda a, v: -1 / mp.sqrt((1 - a) * (1 + a)) if abs(a) != 1 else -mp.inf),
        "atan": (mp.atan, lambda a, v: 1 / (1 + a * a)),
        "sinh": (mp.sinh, lambda a, v: mp.cosh(a)), "cosh": (mp.cosh, lambda a, v: mp.sinh(a)),
        "tanh": (mp.tanh, lambda a, v: mp.sech(a) ** 2), "asinh": (mp.asinh, lambda a, v: 1 / mp.sqrt(a * a + 1)),
        "acosh": (mp.acosh, lambda a, v: 1 / mp.sqrt((a - 1) * (a + 1)) if a != 1 else mp.inf),
        "atanh": (mp.atanh, lambda a, v: 1 / ((1 - a) * (1 + a)) if abs(a) != 1 else mp.inf),
        "erf": (mp.erf, lambda a, v: 2 / mp.sqrt(mp.pi) * mp.exp(-a * a)),
        "erfc": (mp.erfc, lambda a, v: -2 / mp.sqrt(mp.pi) * mp.exp(-a * a)),
        "sigmoid": (lambda a: 1 / (1 + mp.exp(-a)), lambda a, v: v / (1 + mp.exp(a))),
    }


def _fallback_apply(name: str, va: Any) -> tuple[Any, Any]:
    """Value and partial of ``name`` at the ball's midpoint in mpmath (no proven radius)."""
    mp = _mp()
    fn, partial = _mpmath_functions()[name]
    with mp.workprec(ctx.prec):
        a = to_mpf(va)
        value = fn(a)
        d = partial(a, value)
    if _active:
        _record().fallback.add(name)
    return arb(value), arb(d)


def _unary(name: str, domain: Callable[[Any, Any], bool] | None = None,
           what: str = "") -> Callable[[Any], Any]:
    """An elementwise function with its derivative; outside ``domain(ball, grain)`` → NaN."""

    def apply(a: Any) -> Any:
        if _active:
            _record().ops.add(name)
        va = _value(a)
        if domain is not None and not domain(va, _grain(a)):
            if _active:
                _record().fail(what)
            return _node(_nan(), [(a, _nan())])
        functions = ARB_FUNCTIONS.get(name)
        if functions is None:
            value, d = _fallback_apply(name, va)
            return value if not isinstance(a, Var) else _node(value, [(a, d)], abs(value))
        fn, partial = functions
        value = fn(va)
        if not isinstance(a, Var):
            return value
        return _node(value, [(a, partial(va, value))], abs(value))

    apply.__name__ = name
    return apply


def _sign_at_least(offset: int, strict: bool) -> Callable[[Any, Any], bool]:
    """A domain ``a + offset > 0`` (strict) or ``≥ 0``, decided on the ball (exactly where it holds 0)."""

    def inside(va: Any, grain: int | None) -> bool:
        s, _ = _decide(va + offset, _sum_grain(grain, 0))
        return s > 0 if strict else s >= 0

    return inside


def _within_unit(va: Any, grain: int | None) -> bool:
    g = _sum_grain(grain, 0)
    return _decide(1 - va, g)[0] >= 0 and _decide(va + 1, g)[0] >= 0


def absolute(a: Any) -> Any:
    va = _value(a)
    ra = _rational(a)
    s, proven = _decide(va, None if ra is None else _bound(*ra))
    if isinstance(a, Var):
        if s == 0:
            _record().switches.append(Switch("abs", a, "kink", len(_record().branches), proven))
        _record().branches.append(s >= 0)
    return _node(abs(va), [(a, arb(s))], _mag(a), _grain(a))


def sign(a: Any) -> Any:
    va = _value(a)
    ra = _rational(a)
    s, proven = _decide(va, None if ra is None else _bound(*ra))
    if isinstance(a, Var):
        if s == 0:
            _record().switches.append(Switch("sign", a, "jump", len(_record().branches), proven))
        _record().branches.append(s)
    return arb(s)


def _floor_of(a: Any, shift: Any = 0) -> tuple[int, bool, bool]:
    """floor(a + shift) as an integer, whether a + shift is an integer (a tie), and whether that was proven."""
    va = _value(a) + shift
    grain = _sum_grain(_grain(a), _grain(shift), 0)
    candidate = va.mid().floor()
    n = int(candidate.unique_fmpz())
    for k in (n, n + 1):
        s, proven = _decide(va - k, grain)
        if s == 0:
            return k, True, proven
    return n, False, True


def _step(name: str, kind: str) -> Callable[[Any], Any]:
    """A piecewise-constant function (floor, ceil, round): slope 0, a jump where its argument is an integer."""

    def apply(a: Any) -> Any:
        if not _value(a).is_finite():
            return _nan()  # no integer part of an infinite or undefined value
        if kind == "floor":
            value, tie, proven = _floor_of(a)
        elif kind == "ceil":
            value, tie, proven = _floor_of(negative(a) if isinstance(a, Var) else -_value(a))
            value = -value
        else:
            value, tie, proven = _floor_of(a, arb(0.5))
        if isinstance(a, Var):
            if tie:
                _record().switches.append(Switch(name, a, "jump", len(_record().branches), proven))
            _record().branches.append(value)
        return arb(value)

    apply.__name__ = name
    return apply


def _extremum(name: str, prefer: Callable[[int], bool]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        va, vb = _value(a), _value(b)
        s, proven = _decide(va - vb, _difference_bound(a, b))
        first = prefer(s)
        if isinstance(a, Var) or isinstance(b, Var):
            _record().branches.append(first)
        if s == 0:
            d = _difference(a, b)
            if d is not None:
                _record().switches.append(Switch(name, d, "kink", len(_record().branches) - 1, proven))
        picked, value = (a, va) if first else (b, vb)
        if not isinstance(picked, Var):
            # a constant picked over a traced value stays on the tape (without partials), so that what
            # follows records its branches the same way on either side of the switch
            return Var(value, (), abs(value), _grain(picked)) if isinstance(a, Var) or isinstance(b, Var) else value
        return _node(value, [(picked, 1)], _mag(picked), _grain(picked))

    apply.__name__ = name
    return apply


maximum = _extremum("maximum", lambda s: s >= 0)
minimum = _extremum("minimum", lambda s: s <= 0)


def atan2(a: Any, b: Any) -> Any:
    if _active:
        _record().ops.add("atan2")
    va, vb = _value(a), _value(b)
    sa, proven = _decide(va, _grain(a))
    sb, _ = _decide(vb, _grain(b))
    if sa == 0 and sb == 0:
        _record().fail("atan2 at the origin")
        return _node(_nan(), [(a, _nan()), (b, _nan())])
    r2 = va * va + vb * vb
    if sa == 0 and sb < 0 and isinstance(a, Var):
        _record().switches.append(Switch("atan2", a, "jump", len(_record().branches), proven))  # the cut: ±π
    if isinstance(a, Var) or isinstance(b, Var):
        _record().branches.append((sa >= 0, sb >= 0))
    # on the cut the tape takes the upper side (+π), as atan2(+0, x < 0) does
    value = arb.atan2(arb(0) if sa == 0 else va, vb)
    return _node(value, [(a, vb / r2), (b, -va / r2)])


def logaddexp(a: Any, b: Any) -> Any:
    va, vb = _value(a), _value(b)
    big = va if va.mid() >= vb.mid() else vb
    value = big + ((va - big).exp() + (vb - big).exp()).log()
    return _node(value, [(a, (va - value).exp()), (b, (vb - value).exp())], abs(value))


def _sum(values: list[Any]) -> Any:
    if not values:
        return arb(0)
    total = arb(0)
    mag = arb(0)
    grains = []
    for v in values:
        total += _value(v)
        mag += _mag(v)
        grains.append(_grain(v))
    return _node(total, [(v, 1) for v in values], mag, _sum_grain(*grains))


def _prod(values: list[Any]) -> Any:
    if _active:
        _record().ops.add("prod")
    vals = [_value(v) for v in values]
    n = len(vals)
    # ∂/∂a_i = product of the others, from prefix and suffix products (right at zeros too)
    prefix, suffix = [arb(1)] * (n + 1), [arb(1)] * (n + 1)
    for i in range(n):
        prefix[i + 1] = prefix[i] * vals[i]
        suffix[n - 1 - i] = suffix[n - i] * vals[n - 1 - i]
    mag = arb(1)
    grain: int | None = 0
    for v in values:
        mag = mag * _mag(v)
        g = _grain(v)
        grain = None if grain is None or g is None else min(grain + g, _NO_GRAIN)
    return _node(prefix[n], [(v, prefix[i] * suffix[i + 1]) for i, v in enumerate(values)], mag, grain)


# --------------------------------------------------------------------------- matrix operations
def _traced(array: np.ndarray) -> bool:
    return any(type(v) is Var for v in array.flat)


def _constant_floats(array: np.ndarray) -> list[float] | None:
    """The entries of a constant array as floats in the program's dtype (None unless all are real numbers)."""
    numbers = (float, int, np.float64, np.float32)
    if any(type(v) not in numbers for v in array.flat):
        return None
    floats = np.asarray(array, dtype=np.float64)
    if _active and _active[-1].constants == "float32":
        with np.errstate(over="ignore", under="ignore"):
            floats = floats.astype(np.float32).astype(np.float64)
    return floats.ravel().tolist()


def _ball_matrix(array: np.ndarray) -> Any:
    rows, cols = array.shape
    floats = _constant_floats(array)
    if floats is not None:
        return arb_mat(rows, cols, floats)
    return arb_mat(rows, cols, [_value(v) for v in array.flat])


def _abs_of(array: np.ndarray, balls: Any) -> Any:
    """|entries| of an array already held as balls (from the floats where it is a constant array)."""
    floats = _constant_floats(array)
    if floats is not None:
        return arb_mat(balls.nrows(), balls.ncols(), np.abs(floats).tolist())
    return _abs_matrix(balls)


def _mag_matrix(array: np.ndarray, absolute: Any) -> Any:
    rows, cols = array.shape
    if not _traced(array):
        return absolute
    return arb_mat(rows, cols, [_mag(v) for v in array.flat])


def _abs_matrix(matrix: Any) -> Any:
    return arb_mat(matrix.nrows(), matrix.ncols(), [abs(v) for v in matrix.entries()])


def _gather(array: np.ndarray, table: list[Any]) -> Any:
    """The adjoints (or scales) of an array of nodes as an arb_mat (0 for constants and unreached nodes)."""
    rows, cols = array.shape
    zero = arb(0)
    out = []
    for v in array.flat:
        value = table[v.index] if isinstance(v, Var) else None
        out.append(zero if value is None else value)
    return arb_mat(rows, cols, out)


def _scatter(array: np.ndarray, matrix: Any, table: list[Any]) -> None:
    """Add a matrix of adjoints (or scales) into the table entries of the array's nodes."""
    for v, d in zip(array.flat, matrix.entries()):
        if isinstance(v, Var):
            old = table[v.index]
            table[v.index] = d if old is None else old + d


def _outputs(block: _Block, values: Any, mags: Any, shape: tuple[int, int]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for k, (value, mag) in enumerate(zip(values.entries(), mags.entries())):
        var = Var(value, (), mag, None, block)
        block.outputs.append(var)
        out.flat[k] = var
    return out


def _matmul2(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """C = A·B for 2-D object arrays, as one node when either holds tape values."""
    a, b = _ball_matrix(left), _ball_matrix(right)
    c = a * b
    traced_left, traced_right = _traced(left), _traced(right)
    if not (traced_left or traced_right):
        out = np.empty((c.nrows(), c.ncols()), dtype=object)
        out.flat[:] = c.entries()
        return out
    abs_a, abs_b = _abs_of(left, a), _abs_of(right, b)

    def backward(adjoint: list[Any], scale: list[Any]) -> None:
        g, s = _gather(outputs, adjoint), _gather(outputs, scale)
        if traced_left:
            _scatter(left, g * b.transpose(), adjoint)
            _scatter(left, s * abs_b.transpose(), scale)
        if traced_right:
            _scatter(right, a.transpose() * g, adjoint)
            _scatter(right, abs_a.transpose() * s, scale)

    block = _Block([left, right], backward)
    outputs = _outputs(block, c, _mag_matrix(left, abs_a) * _mag_matrix(right, abs_b), (c.nrows(), c.ncols()))
    return outputs


def matmul(a: Any, b: Any) -> Any:
    """The matrix product of object arrays (NumPy's rules for 1-D and 2-D operands), one ``arb_mat`` node."""
    from .namespaces import _obj

    if _active:
        _record().ops.add("matmul")
    left, right = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if left.ndim == 0 or right.ndim == 0 or left.ndim > 2 or right.ndim > 2:
        return _obj(np.matmul(left, right))
    l2 = left.reshape(1, -1) if left.ndim == 1 else left
    r2 = right.reshape(-1, 1) if right.ndim == 1 else right
    if l2.shape[1] != r2.shape[0]:
        raise ValueError(f"matmul: shapes {left.shape} and {right.shape} are not aligned")
    if l2.shape[1] == 0:
        return _obj(np.matmul(left, right))
    out = _matmul2(l2, r2)
    if left.ndim == 1:
        out = out[0]
    if right.ndim == 1:
        out = out[..., 0]
    return _obj(out)


#: ``@`` of object arrays holding tape values (namespaces' ``_matmul`` looks for this on the values' type)
Var.tape_matmul = staticmethod(matmul)  # type: ignore[attr-defined]


def _inverse(a: Any) -> Any | None:
    """A⁻¹ as balls, or None where the balls do not prove A invertible at this precision."""
    try:
        return a.inv()
    except ZeroDivisionError:
        return None


def _linalg_solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """X = A⁻¹B as one node, or None where A is not proven invertible (the caller eliminates instead)."""
    column = rhs.reshape(len(rhs), -1)
    a, b = _ball_matrix(matrix), _ball_matrix(column)
    inverse = _inverse(a)
    if inverse is None:
        return None
    x = inverse * b
    traced_a, traced_b = _traced(matrix), _traced(column)
    if not (traced_a or traced_b):
        out = np.empty(column.shape, dtype=object)
        out.flat[:] = x.entries()
        return out.reshape(rhs.shape)
    inverse_t = inverse.transpose()
    abs_inverse_t, abs_x_t = _abs_matrix(inverse_t), _abs_matrix(x).transpose()

    def backward(adjoint: list[Any], scale: list[Any]) -> None:
        g, s = _gather(outputs, adjoint), _gather(outputs, scale)
        gb, sb = inverse_t * g, abs_inverse_t * s
        if traced_b:
            _scatter(column, gb, adjoint)
            _scatter(column, sb, scale)
        if traced_a:
            _scatter(matrix, -(gb * x.transpose()), adjoint)
            _scatter(matrix, sb * abs_x_t, scale)

    block = _Block([matrix, column], backward)
    mags = _abs_matrix(inverse) * _mag_matrix(column, _abs_of(column, b))
    outputs = _outputs(block, x, mags, column.shape)
    return outputs.reshape(rhs.shape)


def _linalg_inv(matrix: np.ndarray) -> np.ndarray | None:
    a = _ball_matrix(matrix)
    inverse = _inverse(a)
    if inverse is None:
        return None
    if not _traced(matrix):
        out = np.empty(matrix.shape, dtype=object)
        out.flat[:] = inverse.entries()
        return out
    inverse_t = inverse.transpose()
    abs_inverse_t = _abs_matrix(inverse_t)

    def backward(adjoint: list[Any], scale: list[Any]) -> None:
        g, s = _gather(outputs, adjoint), _gather(outputs, scale)
        _scatter(matrix, -(inverse_t * g * inverse_t), adjoint)
        _scatter(matrix, abs_inverse_t * s * abs_inverse_t, scale)

    block = _Block([matrix], backward)
    outputs = _outputs(block, inverse, _abs_matrix(inverse), matrix.shape)
    return outputs


def _linalg_det(matrix: np.ndarray) -> Any | None:
    a = _ball_matrix(matrix)
    inverse = _inverse(a)
    if inverse is None:
        return None
    det = a.det()
    if not _traced(matrix):
        return det
    cofactor = inverse.transpose() * det  # ∂det/∂A = det·A⁻ᵀ
    abs_cofactor = _abs_matrix(cofactor)

    def backward(adjoint: list[Any], scale: list[Any]) -> None:
        g, s = adjoint[out.index], scale[out.index]
        if g is not None:
            _scatter(matrix, cofactor * g, adjoint)
        if s is not None:
            _scatter(matrix, abs_cofactor * s, scale)

    block = _Block([matrix], backward)
    one = arb_mat(1, 1, [det])
    out = _outputs(block, one, arb_mat(1, 1, [abs(det)]), (1, 1)).flat[0]
    return out


@functools.lru_cache(maxsize=1)
def _tape_array_type() -> type:
    from .namespaces import ObjectArray

    class TapeArray(ObjectArray):
        """An object array whose ``@`` is the tape's matrix product (no search for tape values among constants)."""

        def __matmul__(self, other):  # type: ignore[override]
            return matmul(self, other)

        def __rmatmul__(self, other):  # type: ignore[override]
            return matmul(other, self)

    return TapeArray


def _tape_array(value: Any) -> Any:
    array = np.asarray(value, dtype=object)
    return array if array.ndim == 0 else array.view(_tape_array_type())


def _make_linalg(namespace: Any) -> Any:
    """``xp.linalg`` on the tape: solve, inv and det as one ``arb_mat`` node each; Gaussian elimination on the
    tape's scalars only where the balls do not prove the matrix invertible (a singular matrix at the point)."""
    from .namespaces import _obj, _ObjectLinalg

    class _TapeLinalg(_ObjectLinalg):
        def det(self, a: Any) -> Any:
            _record().ops.add("linalg.det")
            matrix = np.asarray(a, dtype=object)
            if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] and matrix.size:
                out = _linalg_det(matrix)
                if out is not None:
                    return _obj(out)
            return _ObjectLinalg.det(self, a)

        def solve(self, a: Any, b: Any) -> Any:
            _record().ops.add("linalg.solve")
            matrix, rhs = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
            if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] and rhs.ndim in (1, 2) \
                    and len(rhs) == len(matrix) and matrix.size and rhs.size:
                out = _linalg_solve(matrix, rhs)
                if out is not None:
                    return _obj(out)
            return _ObjectLinalg.solve(self, a, b)

        def inv(self, a: Any) -> Any:
            _record().ops.add("linalg.inv")
            matrix = np.asarray(a, dtype=object)
            if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] and matrix.size:
                out = _linalg_inv(matrix)
                if out is not None:
                    return _obj(out)
            return _ObjectLinalg.inv(self, a)

        def norm(self, x: Any, axis: Any = None, keepdims: bool = False, ord: Any = None) -> Any:  # noqa: A002
            _record().ops.add("linalg.norm")
            return _ObjectLinalg.norm(self, x, axis=axis, keepdims=keepdims, ord=ord)

    return _TapeLinalg(namespace)


def _select(cond: Any, a: Any, b: Any) -> Any:
    return a if bool(cond) else b


def namespace() -> Any:
    """The namespace whose scalars are :class:`Var` nodes (the case's operations on the tape)."""
    return _namespace(ctx.prec)


#: names under which the namespace's aliases are recorded on the tape
_CANONICAL = {"cumsum": "cumulative_sum", "cumprod": "cumulative_prod"}


def _namespace(prec: int) -> Any:
    cached = _NAMESPACES.get(prec)
    if cached is None:
        cached = _NAMESPACES[prec] = _build_namespace()
    return cached


_NAMESPACES: dict[int, Any] = {}


def _build_namespace() -> Any:
    from .namespaces import _ObjectNamespace

    def reduce_pairwise(pair: Callable[[Any, Any], Any]) -> Callable[[list[Any]], Any]:
        def reduce(values: list[Any]) -> Any:
            out = values[0]
            for v in values[1:]:
                out = pair(out, v)
            return out
        return reduce

    class _TapeNamespace(_ObjectNamespace):
        """The object namespace whose every public operation is recorded on the tape by name."""

        def __getattribute__(self, name: str) -> Any:
            value = object.__getattribute__(self, name)
            if _active and not name.startswith("_") and name not in ("label", "linalg") and callable(value):
                _record().ops.add(_CANONICAL.get(name, name))
            return value

        @property
        def linalg(self) -> Any:
            return _make_linalg(self)

        def asarray(self, x: Any, dtype: Any = None) -> Any:
            array = _ObjectNamespace.asarray(self, x, dtype)
            return _tape_array(array) if np.ndim(array) else array

    unary = {
        "exp": _unary("exp"),
        "expm1": _unary("expm1"),
        "log": _unary("log", _sign_at_least(0, True), "a logarithm of a non-positive number"),
        "log1p": _unary("log1p", _sign_at_least(1, True), "log1p of a number ≤ −1"),
        "log2": _unary("log2", _sign_at_least(0, True), "a logarithm of a non-positive number"),
        "log10": _unary("log10", _sign_at_least(0, True), "a logarithm of a non-positive number"),
        "sqrt": _unary("sqrt", _sign_at_least(0, False), "a square root of a negative number"),
        "square": lambda a: multiply(a, a),
        "abs": absolute,
        "sign": sign,
        "sin": _unary("sin"),
        "cos": _unary("cos"),
        "tan": _unary("tan"),
        "asin": _unary("asin", _within_unit, "asin outside [−1, 1]"),
        "acos": _unary("acos", _within_unit, "acos outside [−1, 1]"),
        "atan": _unary("atan"),
        "sinh": _unary("sinh"),
        "cosh": _unary("cosh"),
        "tanh": _unary("tanh"),
        "asinh": _unary("asinh"),
        "acosh": _unary("acosh", _sign_at_least(-1, False), "acosh below 1"),
        "atanh": _unary("atanh", _within_unit, "atanh outside [−1, 1]"),
        "floor": _step("floor", "floor"),
        "ceil": _step("ceil", "ceil"),
        "round": _step("round", "round"),
        "negative": negative,
        "erf": _unary("erf"),
        "erfc": _unary("erfc"),
        "sigmoid": _unary("sigmoid"),
    }
    binary = {"maximum": maximum, "minimum": minimum, "pow": power, "atan2": atan2, "logaddexp": logaddexp,
              "add": add, "subtract": subtract, "multiply": multiply, "divide": divide}
    ns = _TapeNamespace("arb balls (reverse accumulation)", unary, binary, _sum, _prod, reduce_pairwise(maximum),
                        reduce_pairwise(minimum), _select, {"pi": arb.pi(), "e": arb(1).exp(), "inf": arb.pos_inf()})
    ns.matmul = matmul  # type: ignore[method-assign]
    ns.vecdot = lambda a, b, axis=-1: (matmul(a, b) if np.ndim(a) == 1 and np.ndim(b) == 1 and axis in (-1, 0)
                                       else _ObjectNamespace.vecdot(ns, a, b, axis))  # type: ignore[method-assign]

    # an index is piecewise constant in the inputs; a tie between the largest elements is a jump
    def arg(pick: Callable[..., Any]) -> Callable[..., Any]:
        def index(x: Any, axis: Any = None) -> Any:
            array = np.asarray(x, dtype=object)
            return pick(array, axis=axis)
        return index

    ns.argmax = arg(np.argmax)  # type: ignore[method-assign]
    ns.argmin = arg(np.argmin)  # type: ignore[method-assign]
    return ns


# --------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """One evaluation of a case on the tape at one precision.

    ``value_ball``, ``gradient_balls``, ``scale_balls`` hold the proven enclosures; ``value``,
    ``gradient``, ``scale`` and ``magnitude`` their midpoints as exact ``mpmath.mpf`` (for code that
    computes on them with mpmath)."""

    value_ball: Any
    gradient_balls: list[Any]
    scale_balls: list[Any]
    magnitude_ball: Any
    switches: list[Switch]
    domain: list[str]
    ops: set[str]
    branches: list[Any] = field(default_factory=list)
    inputs: list[Var] = field(default_factory=list)
    nodes: list[Var] = field(default_factory=list)
    prec: int = 0
    #: switch arguments whose ball held 0 without proving it 0 at this precision
    unresolved: int = 0
    #: operations evaluated in mpmath (no proven radius)
    fallback: set[str] = field(default_factory=set)
    domain_records: list[DomainRecord] = field(default_factory=list)

    @property
    def value(self) -> Any:
        return to_mpf(self.value_ball)

    @property
    def gradient(self) -> list[Any]:
        cached = self.__dict__.get("_gradient")
        if cached is None:
            cached = self.__dict__["_gradient"] = [to_mpf(g) for g in self.gradient_balls]
        return cached

    @property
    def scale(self) -> list[Any]:
        cached = self.__dict__.get("_scale")
        if cached is None:
            cached = self.__dict__["_scale"] = [to_mpf(s) for s in self.scale_balls]
        return cached

    @property
    def magnitude(self) -> Any:
        return to_mpf(self.magnitude_ball)

    def dependence(self, node: Var) -> list[int]:
        """Indices of the inputs that ``node`` depends on (a nonzero path of partials to it)."""
        reach = {node.index: True}
        for v in reversed(self.nodes[:node.index + 1]):
            if v.index not in reach:
                continue
            for parent, _ in v.parents:
                reach[parent.index] = True
            if v.block is not None:
                for array in v.block.inputs:
                    for u in array.flat:
                        if isinstance(u, Var):
                            reach[u.index] = True
        return [i for i, x in enumerate(self.inputs) if x.index in reach]


def _sweep(out: Var, nodes: list[Var]) -> tuple[list[Any], list[Any]]:
    """Adjoints and path-sum scales of every node up to ``out`` (None where no path reaches)."""
    n = out.index + 1
    adjoint: list[Any] = [None] * n
    absolute: list[Any] = [None] * n
    adjoint[out.index] = arb(1)
    absolute[out.index] = arb(1)
    for node in reversed(nodes[:n]):
        g = adjoint[node.index]
        block = node.block
        if block is not None:
            if not block.done:
                block.done = True
                block.backward(adjoint, absolute)
            continue
        if g is None:
            continue
        c = absolute[node.index]
        for parent, partial in node.parents:
            k = parent.index
            if adjoint[k] is None:
                adjoint[k] = partial * g
                absolute[k] = abs(partial) * c
            else:
                adjoint[k] += partial * g
                absolute[k] += abs(partial) * c
    return adjoint, absolute


def evaluate(func: Callable[..., Any], shapes: list[tuple[int, ...]], flat: list[Any], prec: int,
             check: Callable[[Any], None] | None = None, perturb: float = 0.0, seed: int = 0,
             constants: str = "float64") -> Evaluation:
    """Run ``func(*arrays, xp=namespace())`` on tape nodes at ``prec`` bits and sweep back once.

    ``flat`` holds the point's coordinates (exact ``mpf`` or floats); ``shapes`` the inputs' shapes.
    ``check`` is called with the function's raw output (to reject non-scalars).
    ``perturb`` > 0 multiplies every computed value by 1 + perturb·u, u uniform in
    [−1, 1] (seeded): one sample of what rounding in a dtype with that unit roundoff
    does to the gradient. ``constants="float32"`` rounds the case's float constants to
    float32 (within float32's normal range), as a float32 program holds them.
    Raises the case's own exceptions, and TypeError when it computes with complex numbers.
    """
    from .namespaces import ObjectArray

    import gc

    rec = _Recorder(perturb, seed, constants)
    _active.append(rec)
    _activate()
    saved = ctx.prec
    ctx.prec = prec
    # the tape allocates millions of small objects and frees them together: the cyclic collector's passes over
    # them would cost more than the evaluation
    collecting = gc.isenabled()
    gc.disable()
    try:
        inputs = []
        for v in flat:
            ball = arb(v)
            inputs.append(Var(ball, (), None, _ball_grain(ball)))
        vector = np.empty(len(inputs), dtype=object)
        vector[:] = inputs
        args = [_tape_array(piece.copy()) if piece.ndim else piece.copy().view(ObjectArray)
                for piece in split(vector, shapes)]
        out = func(*args, xp=namespace())
        if check is not None:
            check(out)
        out = np.asarray(out, dtype=object).reshape(-1)[0]
        value = _value(out)
        zero = arb(0)
        if isinstance(out, Var):
            adjoint, absolute = _sweep(out, rec.nodes)
            gradient = [zero if v.index > out.index or adjoint[v.index] is None else adjoint[v.index]
                        for v in inputs]
            scale = [zero if v.index > out.index or absolute[v.index] is None else absolute[v.index]
                     for v in inputs]
        else:
            gradient = [zero] * len(inputs)
            scale = [zero] * len(inputs)
        magnitude = _mag(out)
    finally:
        ctx.prec = saved
        _active.pop()
        _activate()
        if collecting:
            gc.enable()
    return Evaluation(value, gradient, scale, magnitude, rec.switches, rec.domain, rec.ops, rec.branches, inputs,
                      rec.nodes, prec, rec.unresolved, rec.fallback, rec.domain_records)
