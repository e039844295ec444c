"""Cases whose control flow depends on values: ``if x > 0:``, ``while abs(step) > 1e-12:``.

A tape (the reference's, TensorFlow's, JAX's eager ``grad``, PyTorch's) runs the case on numbers,
so each comparison has a value and Python takes one branch. A symbolic trace runs it on symbols,
where ``x > 0`` is a relation with no truth value: SymPy raises "cannot determine truth value of
Relational". :func:`deciding_at` lets the SymPy trace go on the way a tape does: each comparison the
case's own code turns into a bool is decided by its value at the point (the symbols' values are the
case's inputs there), and recorded as a :class:`Guard`. Each decided guard is a strict inequality
that holds at the point, so it holds in a neighbourhood, and the traced formula is the function
there: its derivative is the derivative. A guard whose two sides are equal at the point (a *tie*)
sits exactly at its switch; the formula is then only one side's, and whether a derivative exists is
the reference's decision (a kink or a jump: ``undefined``; a differentiable point: the limit).

JAX's ``jit`` traces with abstract values and refuses such a branch outright
(``TracerBoolConversionError``); :func:`jit_branch_skip` turns that into a skip that names the line.

Nothing here imports the rest of diffbench: the engines and namespaces call in.
"""

from __future__ import annotations

import contextlib
import contextvars
import linecache
import operator
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

#: the relation operators of SymPy's ``rel_op`` -> how the sign of lhs − rhs decides them
_DECIDE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
           "!=": operator.ne}
#: digits a guard whose sides are not exact numbers at the point is evaluated to (SymPy's evalf is adaptive:
#: a nonzero value comes out with this many correct digits; one it cannot tell from 0 is a tie)
GUARD_DIGITS = 60
#: a tie's relation is quoted up to this many characters
_QUOTE = 80

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Guard:
    """One comparison decided at the point: where the case's code made it, its outcome, and whether its two
    sides were equal there (a tie: the guard sits exactly at its switch)."""

    where: str
    taken: bool
    tie: bool = False
    relation: str = ""
    #: lhs − rhs as a SymPy expression of the traced symbols, and its sign at the point (see :func:`flips`)
    difference: Any = field(default=None, compare=False, repr=False)
    sign: int = 0


@dataclass
class _Decider:
    point: dict[Any, Any]
    guards: list[Guard] = field(default_factory=list)


_ACTIVE: "contextvars.ContextVar[_Decider | None]" = contextvars.ContextVar("diffbench_guards", default=None)
_ORIGINAL_BOOL: Any = None


def _library_file(filename: str) -> bool:
    """Whether a frame's file is diffbench's own or a library's, not the case's code."""
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE + os.sep) or filename.startswith("<frozen") or filename.endswith((".pyx", ".pxd")):
        return True
    parts = path.replace("\\", "/").split("/")
    return any(p in ("site-packages", "dist-packages") for p in parts) or \
        any(p in ("sympy", "numpy", "jax", "jaxlib", "torch", "tensorflow", "symengine") for p in parts)


def _line(filename: str, lineno: int) -> str:
    source = linecache.getline(filename, lineno).strip()
    where = f"{os.path.basename(filename)}:{lineno}"
    return f"{where} `{source}`" if source else where


def case_line(frame: Any) -> str:
    """``file.py:12 `source line``` of the first frame, from ``frame`` outwards, in the case's own code."""
    while frame is not None:
        if not _library_file(frame.f_code.co_filename):
            return _line(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return "a comparison inside a library function"


def traceback_line(tb: Any) -> str | None:
    """The innermost line of a traceback in the case's own code (None where every frame is a library's)."""
    found = None
    while tb is not None:
        if not _library_file(tb.tb_frame.f_code.co_filename):
            found = _line(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _exact_sign(expr: Any) -> int:
    """The sign of a SymPy expression of numbers: exact where it is a number, else from an adaptive evalf
    (0 where evalf cannot tell it from 0)."""
    import sympy as sp

    value = sp.sympify(expr)
    if not value.is_Number:
        value = value.evalf(GUARD_DIGITS)
    if not value.is_Number or value is sp.nan:
        raise TypeError(f"a comparison of traced values could not be evaluated at the point: {expr}")
    if value.is_Float and getattr(value, "_prec", 53) <= 1:
        return 0  # evalf's "0.e-N": no digit of it is known to be nonzero
    return int(bool(value > 0)) - int(bool(value < 0))


def _decided_bool(relation: Any) -> bool:
    decider = _ACTIVE.get()
    caller = sys._getframe(1)
    # SymPy's own code asks for truth values and takes the TypeError to mean "not known": it keeps its meaning
    if decider is None or caller.f_globals.get("__name__", "").startswith("sympy"):
        return _ORIGINAL_BOOL(relation)
    op = _DECIDE.get(getattr(relation, "rel_op", ""))
    if op is None:
        return _ORIGINAL_BOOL(relation)
    difference = relation.lhs - relation.rhs
    sign = _exact_sign(difference.xreplace(decider.point))
    taken = bool(op(sign, 0))
    decider.guards.append(Guard(case_line(caller), taken, sign == 0, _quote(relation) if sign == 0 else "",
                                difference, sign))
    return taken


def flips(guards: list[Guard], point: dict[Any, Any]) -> Guard | None:
    """The first guard whose sign at ``point`` (symbol -> exact SymPy number: another rounding of the point)
    differs from its sign where the case was traced, or None: the traced formula holds at ``point`` as far as the
    guards tell only where none does."""
    for guard in guards:
        if guard.difference is not None and _exact_sign(guard.difference.xreplace(point)) != guard.sign:
            return guard
    return None


def _quote(relation: Any) -> str:
    """The relation as text where it is short; printing a long unrolled expression costs seconds."""
    from sympy import preorder_traversal

    nodes = 0
    for _ in preorder_traversal(relation):
        nodes += 1
        if nodes > _QUOTE:
            return f"two expressions compared by {relation.rel_op}"
    text = str(relation)
    return text if len(text) <= _QUOTE else text[:_QUOTE] + "…"


def _install() -> None:
    """Route SymPy's ``Relational.__bool__`` through the decider; outside :func:`deciding_at` (and for SymPy's own
    calls) it behaves as before: a TypeError."""
    global _ORIGINAL_BOOL
    from sympy.core.relational import Relational

    if _ORIGINAL_BOOL is None:
        _ORIGINAL_BOOL = Relational.__bool__
        Relational.__bool__ = _decided_bool  # type: ignore[method-assign]


@contextlib.contextmanager
def deciding_at(point: dict[Any, Any]) -> Iterator[list[Guard]]:
    """While a case runs on SymPy symbols, decide every comparison its code branches on by the value at ``point``
    (symbol -> exact SymPy number). Yields the list the decided :class:`Guard` s are appended to, in order.
    ``point`` may be extended while it runs (:func:`extend_point`: ``xp.grad``'s own symbols)."""
    _install()
    decider = _Decider(dict(point))
    token = _ACTIVE.set(decider)
    try:
        yield decider.guards
    finally:
        _ACTIVE.reset(token)


def point_value(expr: Any) -> Any | None:
    """The value at the active point of a SymPy expression (exact where the point is), None outside
    :func:`deciding_at`."""
    decider = _ACTIVE.get()
    if decider is None:
        return None
    return expr.xreplace(decider.point) if hasattr(expr, "xreplace") else expr


def extend_point(values: dict[Any, Any]) -> None:
    """Give new symbols (``xp.grad``'s own) their values at the active point; nothing outside :func:`deciding_at`."""
    decider = _ACTIVE.get()
    if decider is not None:
        decider.point.update(values)


def describe(guards: list[Guard]) -> str:
    """One line on the guards a trace decided: each place in the case's code with its outcomes, ties first."""
    ties = [g for g in guards if g.tie]
    counts: dict[str, list[int]] = {}
    for g in guards:
        counts.setdefault(g.where, [0, 0])[0 if g.taken else 1] += 1
    places = "; ".join(f"{where}: " + ", ".join(p for p in (f"true ×{t}" if t else "", f"false ×{f}" if f else "")
                                                if p) for where, (t, f) in counts.items())
    text = (f"traced at the point: {len(guards)} comparison{'s' if len(guards) != 1 else ''} on values decided by "
            f"their values there ({places}), so the formula holds around the point")
    if ties:
        tie = ties[0]
        text = (f"the guard at {tie.where} sits exactly at its switch here ({tie.relation}: both sides are equal at "
                f"the point), so the formula is one side's ({'true' if tie.taken else 'false'} branch) and whether a "
                f"derivative exists is the reference's decision"
                + (f" ({len(ties) - 1} more such guard{'s' if len(ties) > 2 else ''})" if len(ties) > 1 else "")
                + "; " + text)
    return text


def jit_branch_skip(exc: BaseException, concretization: tuple[type, ...], variant: str) -> str | None:
    """The skip text for a JAX ``jit`` row whose case branches on a traced value (``exc`` one of the
    ``concretization`` error types: ``TracerBoolConversionError``, ``ConcretizationTypeError``), naming the line;
    None for any other exception."""
    if not concretization or not isinstance(exc, concretization):
        return None
    where = traceback_line(exc.__traceback__)
    at = f" at {where}" if where else ""
    return (f"jax.{variant} traces the case with abstract values, so its data-dependent branch{at} (an `if`/`while` "
            f"on a traced value) cannot be decided ({type(exc).__name__}); the eager variant follows Python's "
            "control flow, or write the branch with xp.where")
