"""Mistakes named at the door: each case is evaluated once, when its file is loaded, in a namespace that
watches what the function does with its values.

A mistake that makes every method fail (``np.exp(x)`` where ``xp.exp(x)`` was meant, a vector or ``None``
returned, a result that does not depend on the inputs) then becomes one finding for the case, with the fix,
instead of one ``error`` row per method with each framework's own message.

The values are :class:`Probe` scalars (a float and whether it depends on the inputs) in object arrays of
:class:`DoorArray`. NumPy hands a call like ``np.exp(x)`` on such an array to ``DoorArray.__array_ufunc__``
(NumPy's override protocols, NEP 13 and NEP 18); one on a bare ``Probe`` calls its ``exp`` method.
Both name the function unless diffbench's own namespace code made the call. Arithmetic operators are
never findings: they work on every namespace's values.

Anything else the function raises here is left to the methods (they say it in their rows): the check
reports only what it is sure of, so a case it cannot judge runs as before.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from typing import Any, Callable, Iterator

import numpy as np

from .alarm import alarm
from .namespaces import ARRAY_API_ALIASES, FUNCTIONS, LINALG, SYNONYMS, ObjectArray, _ObjectNamespace

__all__ = ["Finding", "check_function", "Probe", "DoorArray", "door_namespace"]

#: the largest case (scalar inputs) evaluated at the door; a larger one is left to the methods
MAX_INPUTS = 20_000
#: seconds one evaluation may take at the door before the check gives up on the case (no finding)
BUDGET_S = 10.0

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_NUMPY = os.path.dirname(os.path.abspath(np.__file__))

#: ufuncs that Python's operators call (``x * 2``, ``-x``, ``abs(x)``, ``x < y``): the same on every namespace
_OPERATORS = frozenset({"add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "remainder", "power",
                        "negative", "positive", "absolute", "matmul", "less", "less_equal", "greater",
                        "greater_equal", "equal", "not_equal", "divmod", "fmod"})
#: NumPy functions that read only an array's shape or type: harmless on any namespace's values
_SHAPE_ONLY = frozenset({"shape", "ndim", "size", "iscomplexobj", "isrealobj", "result_type", "can_cast",
                         "broadcast_shapes", "zeros_like", "ones_like", "empty_like", "full_like"})
#: NumPy's names -> the array API's (``xp``) names
_XP_NAMES = {v: k for k, v in ARRAY_API_ALIASES.items()} | {"absolute": "abs", "true_divide": "divide",
                                                             "amax": "max", "amin": "min"}


class Finding(Exception):
    """A mistake found at the door; ``str()`` is the one-line message with the fix."""


class _OutOfTime(BaseException):
    """The door's time budget ran out (a BaseException, so the case's own ``except Exception`` cannot eat it)."""


def _xp_hint(numpy_name: str) -> str:
    """``use xp.exp``, or what to do when xp has no such name."""
    base = numpy_name.split(".")[-1]
    known = set(FUNCTIONS) | {f"linalg.{n}" for n in LINALG}
    for name in (numpy_name, base, _XP_NAMES.get(base), SYNONYMS.get(base)):
        if name and name in known and name != "linalg":
            return f"use xp.{name}"
    return "write it with xp's functions (the README lists them)"


def _from_case_code() -> bool:
    """Whether the NumPy call being dispatched was made by code outside diffbench (the case's). A call made
    inside an ndarray method (``x.max()``, ``x.clip(0)``: NumPy's ``_methods``) is the method's, not a NumPy
    function the case called."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_NUMPY):
            return not path.startswith(_PACKAGE)
        if os.path.basename(path) == "_methods.py":
            return False
        frame = frame.f_back
    return False


def _numpy_name(fn: Any) -> str:
    """``numpy.exp``, ``numpy.linalg.det``, or the function's own name when NumPy does not export it."""
    name = getattr(fn, "__name__", repr(fn))
    module = getattr(fn, "__module__", None) or "numpy"
    if module.startswith("numpy.linalg"):
        return f"linalg.{name}"
    return name


def _called(what: str) -> Finding:
    return Finding(f"calls numpy.{what} on an xp value: {_xp_hint(what)} (a NumPy function turns TensorFlow "
                   "tensors and SymPy symbols into plain numbers, or fails on them)")


# --------------------------------------------------------------------------- values
class Probe:
    """A scalar at the door: its float value and whether it depends on the case's inputs."""

    __slots__ = ("value", "varies")

    def __init__(self, value: Any, varies: bool = False) -> None:
        self.value = float(value) if not isinstance(value, Probe) else value.value
        self.varies = varies

    # arithmetic with numbers and other probes
    def _binary(self, other: Any, fn: Callable[[float, float], float], swap: bool = False) -> Any:
        if isinstance(other, np.ndarray):
            return NotImplemented
        if isinstance(other, Probe):
            value, varies = other.value, other.varies
        elif isinstance(other, (int, float, np.integer, np.floating)):
            value, varies = float(other), False
        else:
            return NotImplemented
        with np.errstate(all="ignore"):
            result = fn(value, self.value) if swap else fn(self.value, value)
        return Probe(result, self.varies or varies)

    def __add__(self, o: Any) -> Any: return self._binary(o, np.add)
    def __radd__(self, o: Any) -> Any: return self._binary(o, np.add, True)
    def __sub__(self, o: Any) -> Any: return self._binary(o, np.subtract)
    def __rsub__(self, o: Any) -> Any: return self._binary(o, np.subtract, True)
    def __mul__(self, o: Any) -> Any: return self._binary(o, np.multiply)
    def __rmul__(self, o: Any) -> Any: return self._binary(o, np.multiply, True)
    def __truediv__(self, o: Any) -> Any: return self._binary(o, _divide)
    def __rtruediv__(self, o: Any) -> Any: return self._binary(o, _divide, True)
    def __floordiv__(self, o: Any) -> Any: return self._binary(o, np.floor_divide)
    def __rfloordiv__(self, o: Any) -> Any: return self._binary(o, np.floor_divide, True)
    def __mod__(self, o: Any) -> Any: return self._binary(o, np.mod)
    def __rmod__(self, o: Any) -> Any: return self._binary(o, np.mod, True)
    def __pow__(self, o: Any) -> Any: return self._binary(o, np.power)
    def __rpow__(self, o: Any) -> Any: return self._binary(o, np.power, True)
    def __neg__(self) -> "Probe": return Probe(-self.value, self.varies)
    def __pos__(self) -> "Probe": return self
    def __abs__(self) -> "Probe": return Probe(abs(self.value), self.varies)

    def _compare(self, other: Any, op: Callable[[float, float], bool]) -> Any:
        if isinstance(other, np.ndarray):
            return NotImplemented
        value = other.value if isinstance(other, Probe) else other
        return Truth(op(self.value, value), self.varies or (isinstance(other, Probe) and other.varies))

    def __lt__(self, o: Any) -> Any: return self._compare(o, lambda a, b: a < b)
    def __le__(self, o: Any) -> Any: return self._compare(o, lambda a, b: a <= b)
    def __gt__(self, o: Any) -> Any: return self._compare(o, lambda a, b: a > b)
    def __ge__(self, o: Any) -> Any: return self._compare(o, lambda a, b: a >= b)
    def __eq__(self, o: Any) -> Any: return self._compare(o, lambda a, b: a == b)  # type: ignore[override]
    def __ne__(self, o: Any) -> Any: return self._compare(o, lambda a, b: a != b)  # type: ignore[override]
    __hash__ = object.__hash__

    def __float__(self) -> float:
        return self.value

    def __bool__(self) -> bool:
        return self.value != 0

    def __repr__(self) -> str:
        return f"Probe({self.value!r}{', varies' if self.varies else ''})"


class Truth:
    """The outcome of comparing probes: a bool that remembers whether it depends on the inputs."""

    __slots__ = ("value", "varies")

    def __init__(self, value: Any, varies: bool) -> None:
        self.value, self.varies = bool(value), varies

    def __bool__(self) -> bool:
        if self.varies and _state:
            _state[-1].branched = True  # the function takes a branch that depends on its inputs
        return self.value

    def __invert__(self) -> "Truth":
        return Truth(not self.value, self.varies)

    def __and__(self, o: Any) -> "Truth":
        return Truth(self.value and bool(getattr(o, "value", o)), self.varies or getattr(o, "varies", False))

    def __or__(self, o: Any) -> "Truth":
        return Truth(self.value or bool(getattr(o, "value", o)), self.varies or getattr(o, "varies", False))

    __rand__, __ror__ = __and__, __or__

    def __repr__(self) -> str:
        return f"Truth({self.value}{', varies' if self.varies else ''})"


class _Evaluation:
    """What one door evaluation saw besides its result."""

    def __init__(self) -> None:
        self.branched = False


_state: list[_Evaluation] = []


def _divide(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _numpy_method(name: str) -> Callable[[Probe], Any]:
    """NumPy's object loop for ``np.<name>`` calls ``element.<name>()``: on a probe that is the case's call."""
    def method(self: Probe) -> Any:
        raise _called(name)
    method.__name__ = name
    return method


for _name in ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "cbrt", "sin", "cos", "tan", "arcsin",
              "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "deg2rad", "rad2deg",
              "rint", "floor", "ceil", "trunc", "arctan2", "hypot", "logaddexp", "logaddexp2", "square", "reciprocal"):
    setattr(Probe, _name, _numpy_method(_name))


class DoorArray(ObjectArray):
    """An object array of probes that names a NumPy function the case applies to it."""

    __array_priority__ = 1000

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = getattr(ufunc, "__name__", "ufunc")
        if method == "__call__" and name not in _OPERATORS and _from_case_code():
            raise _called(name)
        plain = [np.asarray(a) if isinstance(a, DoorArray) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(a) if isinstance(a, DoorArray) else a for a in kwargs["out"])
        return _wrap(getattr(ufunc, method)(*plain, **kwargs))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        name = _numpy_name(func)
        if name not in _SHAPE_ONLY and _from_case_code():
            raise _called(name)
        return _wrap(super().__array_function__(func, tuple(np.ndarray if issubclass(t, DoorArray) else t
                                                              for t in types), args, kwargs))


    def astype(self, dtype: Any = None, *args: Any, **kwargs: Any) -> "DoorArray":  # type: ignore[override]
        # a cast keeps the values (the namespaces' dtypes are placeholders at the door)
        return self.copy()


def _wrap(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype == object and not isinstance(value, DoorArray):
        return value.view(DoorArray)
    return value


# --------------------------------------------------------------------------- the namespace
def _lifted(fn: Callable[..., float]) -> Callable[..., Probe]:
    def apply(*args: Any) -> Probe:
        values = [a.value if isinstance(a, Probe) else float(a) for a in args]
        with np.errstate(all="ignore"):
            try:
                out = fn(*values)
            except (ValueError, OverflowError, ZeroDivisionError):
                out = math.nan
        return Probe(out, any(isinstance(a, Probe) and a.varies for a in args))
    return apply


def _select(cond: Any, a: Any, b: Any) -> Any:
    chosen = a if bool(cond) else b
    if getattr(cond, "varies", False) and not (isinstance(chosen, Probe) and chosen.varies):
        # a branch that depends on the inputs picked a constant: piecewise constant, not independent
        return Probe(chosen, True)
    return chosen


def _all(combine: Callable[[list[float]], float]) -> Callable[[list[Any]], Probe]:
    return lambda values: _lifted(lambda *v: combine(list(v)))(*values)


def _build() -> _ObjectNamespace:
    erf = np.vectorize(math.erf)
    erfc = np.vectorize(math.erfc)
    unary = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "log2": np.log2, "log10": np.log10,
             "sqrt": np.sqrt, "square": np.square, "abs": np.abs, "sign": np.sign, "sin": np.sin, "cos": np.cos,
             "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
             "cosh": np.cosh, "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
             "floor": np.floor, "ceil": np.ceil, "round": lambda a: np.floor(a + 0.5), "negative": np.negative,
             "erf": lambda a: float(erf(a)), "erfc": lambda a: float(erfc(a)),
             "sigmoid": lambda a: 1 / (1 + np.exp(-a))}
    binary = {"maximum": max, "minimum": min, "pow": np.power, "atan2": np.arctan2, "logaddexp": np.logaddexp,
              "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide}
    return _ObjectNamespace("door", {k: _lifted(v) for k, v in unary.items()},
                            {k: _lifted(v) for k, v in binary.items()}, _all(math.fsum), _all(math.prod),
                            _all(max), _all(min), _select, {"pi": math.pi, "e": math.e, "inf": math.inf})


class _Wrapped:
    """A namespace (or its ``linalg``) whose functions return :class:`DoorArray` values."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if name == "linalg":
            return _Wrapped(found)
        if callable(found):
            def call(*args: Any, **kwargs: Any) -> Any:
                return _wrap(found(*args, **kwargs))
            call.__name__ = name
            return call
        return found

    def __repr__(self) -> str:
        return "<diffbench door namespace>"


def door_namespace() -> Any:
    """The namespace a case is evaluated in at the door: its values are probes in :class:`DoorArray` arrays."""
    return _Wrapped(_build())


# --------------------------------------------------------------------------- the check
@contextlib.contextmanager
def _budget(seconds: float) -> Iterator[None]:
    """Stop the evaluation after ``seconds`` (main thread only; elsewhere no budget)."""
    def expire(signum: int, frame: Any) -> None:
        raise _OutOfTime()

    with alarm(seconds, expire):
        yield


def _probes(value: np.ndarray) -> DoorArray:
    out = np.empty(value.shape, dtype=object)
    for index in np.ndindex(value.shape):
        out[index] = Probe(value[index], True)
    return out.view(DoorArray)


def check_function(func: Callable[..., Any], inputs: dict[str, np.ndarray], name: str = "f",
                   budget_s: float = BUDGET_S) -> str | None:
    """Evaluate ``func(*inputs, xp=door_namespace())`` once; return the one finding that makes every method
    fail, as a sentence with the fix, or None when there is none (or the check cannot judge the case).

    Findings: a NumPy function applied to an xp value, a tuple, list or dict (one array is a vector output;
    several are not), ``None``, an array of something other than numbers, and a result that does not depend
    on the inputs. Never raises for the case's own errors.
    """
    if sum(int(np.size(v)) for v in inputs.values()) > MAX_INPUTS:
        return None
    args = [_probes(np.asarray(v, dtype=np.float64)) for v in inputs.values()]
    exit_now = os._exit

    def no_exit(code: int = 0) -> None:  # the check runs the case in the loading process: it must not end it
        raise _OutOfTime()

    seen = _Evaluation()
    _state.append(seen)
    try:
        os._exit = no_exit  # type: ignore[assignment]
        with _budget(budget_s), np.errstate(all="ignore"):
            out = func(*args, xp=door_namespace())
    except Finding as found:
        return f"{name} {found}"
    except BaseException as exc:  # noqa: BLE001 - the case's own error: the methods report it in their rows
        if isinstance(exc, KeyboardInterrupt):
            raise
        return None
    finally:
        os._exit = exit_now  # type: ignore[assignment]
        _state.pop()
    return _judge_result(out, name, seen.branched)


def _judge_result(out: Any, name: str, branched: bool = False) -> str | None:
    """The finding about what ``func`` returned, or None for a scalar or an array that depends on the inputs
    (or that is constant on a branch the inputs chose: ``branched``, a piecewise constant function). An array
    is a vector output (its derivative is the Jacobian): it must hold numbers, and at least one of them must
    depend on the inputs (an output that does not depend on an input is a zero block, not a mistake)."""
    if out is None:
        return (f"{name} returns None: a case must return its value, a scalar or an array (is a `return` missing?)")
    if isinstance(out, (tuple, list, dict)):
        return (f"{name} returns a {type(out).__name__}; a case must return a scalar or one array: stack the "
                "outputs into an array (xp.stack, xp.concat), or make one case per output")
    if isinstance(out, np.ndarray) and out.dtype != object:
        if out.dtype.kind not in "biufc":
            return _not_numbers(name, out.dtype)
        if branched:
            return None
        return _constant(name, out.reshape(-1)[0]) if out.size == 1 else _constant_array(name, out.shape)
    if isinstance(out, np.ndarray):
        items = list(out.reshape(-1))
        odd = next((v for v in items if not isinstance(v, (Probe, bool, int, float, complex, np.number, np.bool_))),
                   None)
        if odd is not None or not items:
            return _not_numbers(name, type(odd).__name__ if items else "nothing")
        if any(isinstance(v, Probe) and v.varies for v in items) or branched:
            return None
        value = items[0].value if isinstance(items[0], Probe) else items[0]
        return _constant(name, value) if out.size == 1 else _constant_array(name, out.shape)
    if isinstance(out, Probe):
        return None if out.varies or branched else _constant(name, out.value)
    if isinstance(out, (bool, int, float, complex, np.number, np.bool_)):
        return None if branched else _constant(name, out)
    return None  # something the check does not know: the methods will say what they make of it


def _not_numbers(name: str, what: Any) -> str:
    return (f"{name} returns an array holding {what}, not numbers; a case must return a scalar or an array of "
            "numbers computed from its inputs with xp's functions")


def _constant_array(name: str, shape: tuple[int, ...]) -> str:
    return (f"{name} returns an array of shape {tuple(shape)} none of whose entries depends on its inputs: every "
            "Jacobian entry would be 0. Compute the result from the inputs with xp's functions (a float(), .item() "
            "or Python math call on an input cuts the dependence)")


def _constant(name: str, value: Any) -> str:
    shown = value.item() if isinstance(value, np.generic) else value
    return (f"{name} returns the constant {shown!r}, which does not depend on its inputs: every gradient would be 0. "
            "Compute the result from the inputs with xp's functions (a float(), .item() or Python math call on an "
            "input cuts the dependence)")
